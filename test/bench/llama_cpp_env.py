"""llama_cpp_env.py -- a throwaway virtual environment with llama-cpp-python,
shared by the oracle scripts (tokenizer_oracle.py, llm_oracle.py).

pip builds llama.cpp from source there (several minutes on a small
machine).  `native=True` lets llama.cpp's build use every instruction set
of this CPU, as a user building it here would: that is the build the
speed comparison must face.  The tokenizer fixtures do not depend on it.
"""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "build", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PACKAGE = "llama-cpp-python==0.3.36"


def venv_python(name):
    return os.path.join(ROOT, "build", name, "venv", "bin", "python")


def ensure_model():
    if not os.path.exists(MODEL):
        subprocess.check_call(["sh", os.path.join(ROOT, "scripts", "fetch_model.sh")])


def ensure_venv(name, native):
    """Create build/<name>/venv with llama-cpp-python unless it works already."""
    vpy = venv_python(name)
    if os.path.exists(vpy):
        r = subprocess.run([vpy, "-c", "import llama_cpp"], capture_output=True)
        if r.returncode == 0:
            return vpy
    venv = os.path.dirname(os.path.dirname(vpy))
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "venv", venv])
    env = dict(os.environ)
    flags = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
    flags += " -DGGML_NATIVE=ON" if native else " -DGGML_NATIVE=OFF"
    env.setdefault("CMAKE_ARGS", flags)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    env["PIP_ROOT_USER_ACTION"] = "ignore"
    subprocess.check_call([vpy, "-m", "pip", "install", "--disable-pip-version-check",
                           "--no-cache-dir", PACKAGE], env=env)
    return vpy


def reexec_in(vpy, script, marker):
    """Run script again under the venv's interpreter (once)."""
    if os.path.abspath(sys.executable) == os.path.abspath(vpy) or os.environ.get(marker) == "1":
        return
    env = dict(os.environ, **{marker: "1"})
    sys.exit(subprocess.call([vpy, os.path.abspath(script)] + sys.argv[1:], env=env))


def run_beside_llm_run(script, main):
    """The entry point of the scripts that compare build/core/llm_run with
    llama.cpp (llm_oracle.py, llm_trace.py): fetch the model, build
    llm_run, run the script again under the oracle's environment, then
    exit with main()'s status."""
    ensure_model()
    if os.environ.get("LLM_ORACLE_INNER") != "1":
        subprocess.check_call(["make", "-s", "-C", ROOT, "build/core/llm_run"])
        reexec_in(ensure_venv("llm_oracle", native=True), script, "LLM_ORACLE_INNER")
    sys.exit(main())


def requantized(ftype):
    """The default model requantized by llama.cpp to ftype (a name of
    llama.cpp's: Q4_0, Q5_0, Q5_1, Q8_0, Q4_K_M, Q5_K_M, Q6_K, F16...), made
    once under build/models/requant/; the default model itself for None.
    Requantizing a Q4_1 file loses accuracy, not the point here: it puts
    each tensor type's kernels in front of the same comparisons.  Rows
    whose length is not a multiple of 256 (SmolLM2's 576) get llama.cpp's
    fallback type for the K-quants.  Needs the oracle's environment."""
    if not ftype:
        return MODEL
    import ctypes
    import llama_cpp
    out = os.path.join(ROOT, "build", "models", "requant",
                       "SmolLM2-135M-Instruct.%s.gguf" % ftype.upper())
    if not os.path.exists(out):
        code = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype.upper(), None)
        if code is None:
            raise SystemExit("llama.cpp has no file type %s" % ftype)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = code
        params.allow_requantize = True
        if llama_cpp.llama_model_quantize(MODEL.encode(), (out + ".part").encode(),
                                          ctypes.byref(params)) != 0:
            raise SystemExit("llama.cpp could not requantize to %s" % ftype)
        os.rename(out + ".part", out)
    return out
