"""A psql subprocess per call, for the benchmark scripts (standard library only).

The benchmarks talk to a throwaway cluster named by PGHOST/PGPORT/PGUSER/
PGDATABASE in the environment.  Each run() is one psql session: its
statements share settings, NOTICE lines are collected (and handed to a
callback as they arrive, for progress), and a failure raises with psql's
error text.
"""
import hashlib
import os
import subprocess
import threading


class Psql:
    def __init__(self, binary, threads=0, timezone=None):
        self.binary = binary
        self.threads = threads
        self.env = dict(os.environ, PGTZ=timezone) if timezone else None

    def _cmd(self, sqls, script):
        cmd = [self.binary, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
        if self.threads:
            sqls = ["SET tutor.threads = %d" % self.threads] + list(sqls)
        for s in sqls:
            cmd += ["-c", s]
        if script:
            cmd += ["-f", "-"]
        return cmd

    def run(self, sqls, stdin_data=None, on_notice=None, script=False):
        """Run statements (then stdin as a script when script is true) in one
        session; returns stdout without its last newline, and the NOTICEs."""
        proc = subprocess.Popen(self._cmd(sqls, script),
                                stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        notices, errors = [], []

        def pump():
            for line in proc.stderr:
                line = line.rstrip("\n")
                if line.startswith("NOTICE:"):
                    msg = line[len("NOTICE:"):].strip()
                    notices.append(msg)
                    if on_notice:
                        on_notice(msg)
                else:
                    errors.append(line)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        if stdin_data is not None:
            def feed():
                try:
                    proc.stdin.write(stdin_data)
                    proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass        # psql stopped early: its error is reported below

            threading.Thread(target=feed, daemon=True).start()
        out = proc.stdout.read()
        rc = proc.wait()
        t.join()
        if rc != 0:
            raise RuntimeError("psql failed (%d): %s" % (rc, "\n".join(errors)[-4000:]))
        return out.rstrip("\n"), notices

    def rows(self, sql):
        """Rows of one query, each a list of column texts."""
        out, _ = self.run([sql])
        return [ln.split("\t") for ln in out.split("\n")] if out else []

    def value(self, sql):
        """The single value of one query."""
        return self.run([sql])[0].strip()


def library_id():
    """sha256 prefix of the installed tutor_llm.so ($TUTOR_LIB): the build each backend loads.
    Another make install during a run changes it, and then the figures mix two builds."""
    path = os.environ.get("TUTOR_LIB")
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError as e:
        return "unreadable (%s)" % e.strerror


def lit(s):
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"
