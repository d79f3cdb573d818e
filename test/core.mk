# Standalone build of the compute core (src/core, src/models, src/plan): no
# PostgreSQL headers, its own flags, objects under build/.  Included by
# the top-level Makefile.

CORE_CFLAGS = -std=gnu11 -O3 -g -fopenmp-simd -fno-trapping-math -ffp-contract=off -Wall -Wextra -Wno-unused-parameter -Wshadow -fPIC \
	-Isrc/core -Isrc/models -Isrc/plan -Isrc/llm $(BLAS_CFLAGS)
CORE_LDLIBS = $(BLAS_LIBS) -lm -ldl -lpthread
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

CORE_OBJS = $(patsubst src/%.c,build/core/%.o,$(CORE_SRCS))
CORE_LIB = build/core/libtutor_core.a
ASAN_OBJS = $(patsubst src/%.c,build/asan/%.o,$(CORE_SRCS))
ASAN_LIB = build/asan/libtutor_core.a

UNIT_TESTS = test_ops test_attention test_optim test_train test_metrics test_pfa test_kt test_blob test_pool test_plan test_gguf test_quant test_tokenizer test_llm test_llm_model test_chat test_vmath
UNIT_BINS = $(addprefix build/core/,$(UNIT_TESTS))
ASAN_BINS = $(addprefix build/asan/,$(UNIT_TESTS))

build/core/%.o: src/%.c $(wildcard src/core/*.h src/models/*.h src/plan/*.h src/llm/*.h) test/core.mk
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -c $< -o $@

build/asan/%.o: src/%.c $(wildcard src/core/*.h src/models/*.h src/plan/*.h src/llm/*.h) test/core.mk
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) $(SANITIZE_FLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJS)
	$(AR) rcs $@ $^

$(ASAN_LIB): $(ASAN_OBJS)
	$(AR) rcs $@ $^

build/core/test_%: test/unit/test_%.c test/unit/unit.h $(CORE_LIB)
	$(CC) $(CORE_CFLAGS) -Itest/unit $< $(CORE_LIB) -lcmocka $(CORE_LDLIBS) -o $@

build/asan/test_%: test/unit/test_%.c test/unit/unit.h $(ASAN_LIB)
	$(CC) $(CORE_CFLAGS) $(SANITIZE_FLAGS) -Itest/unit $< $(ASAN_LIB) -lcmocka $(CORE_LDLIBS) -o $@

build/core/bench_core: test/bench/bench_core.c test/bench/bench_util.h $(CORE_LIB)
	$(CC) $(CORE_CFLAGS) -O3 $< $(CORE_LIB) $(CORE_LDLIBS) -o $@

# The LLM runtime from the command line (test/bench/llm_oracle.py drives it).
build/core/llm_run: test/bench/llm_run.c test/bench/bench_util.h $(CORE_LIB)
	$(CC) $(CORE_CFLAGS) -O3 $< $(CORE_LIB) $(CORE_LDLIBS) -o $@

# Each test binary prints cmocka's summary; make stops on the first failure.
check-core: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do echo "== $$t"; $$t || exit 1; done

# AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer;
# any report fails the run.
check-sanitize: $(ASAN_BINS)
	@for t in $(ASAN_BINS); do echo "== $$t (ASan+LSan+UBSan)"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $$t || exit 1; done

bench: build/core/bench_core $(CUDA_PLUGIN)
	build/core/bench_core $(if $(CUDA_PLUGIN),$(abspath $(CUDA_PLUGIN)))

# The GGUF tests share their sample writer with the fuzzer's seeds.
build/core/test_gguf build/asan/test_gguf build/core/test_tokenizer build/asan/test_tokenizer \
	build/core/test_llm build/asan/test_llm build/core/test_chat build/asan/test_chat: test/unit/gguf_writer.h

# libFuzzer over the GGUF reader: clang with -fsanitize=fuzzer (Debian:
# packages clang and libclang-rt-14-dev), ASan and UBSan.  The reader
# takes its tensor types from tl_quant (which brings the thread pool) and
# otherwise needs only tl_status.c and tl_alloc.c.  The corpus under
# build/fuzz grows across runs; the seeds are rewritten each time.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR = build/fuzz
FUZZ_GGUF_SRCS = test/fuzz/fuzz_gguf.c src/llm/tl_gguf.c src/core/tl_quant.c src/core/tl_quant_avx2.c \
	src/core/tl_pool.c src/core/tl_status.c src/core/tl_alloc.c

$(FUZZ_DIR)/fuzz_gguf: $(FUZZ_GGUF_SRCS) $(wildcard src/core/*.h src/llm/*.h) test/core.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wshadow -Isrc/core -Isrc/llm $(FUZZ_GGUF_SRCS) -lm -lpthread -o $@

$(FUZZ_DIR)/gguf_seed: test/fuzz/gguf_seed.c test/unit/gguf_writer.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O1 -Wall -Wextra -Itest/unit $< -o $@

fuzz-gguf: $(FUZZ_DIR)/fuzz_gguf $(FUZZ_DIR)/gguf_seed
	@mkdir -p $(FUZZ_DIR)/gguf_corpus $(FUZZ_DIR)/gguf_artifacts
	$(FUZZ_DIR)/gguf_seed $(FUZZ_DIR)/gguf_corpus
	ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=$(FUZZ_DIR)/gguf_artifacts/ -print_final_stats=1 $(FUZZ_DIR)/gguf_corpus

# libFuzzer over the tokenizer and the model loader (test/fuzz/fuzz_tokenizer.c):
# seeds are the GGUF samples and the SentencePiece fixture vocabulary
# (first byte 0: a file) and a few texts (first byte 1: text to encode).
FUZZ_TOK_SRCS = test/fuzz/fuzz_tokenizer.c src/llm/tl_tokenizer.c src/llm/tl_llm.c src/llm/tl_llm_cuda.c src/llm/tl_generate.c \
	src/llm/tl_gguf.c src/core/tl_rng.c src/core/tl_quant.c src/core/tl_quant_avx2.c src/core/tl_vmath.c src/core/tl_pool.c \
	src/core/tl_status.c src/core/tl_alloc.c

$(FUZZ_DIR)/fuzz_tokenizer: $(FUZZ_TOK_SRCS) $(wildcard src/core/*.h src/llm/*.h) test/core.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wshadow -Isrc/core -Isrc/llm $(FUZZ_TOK_SRCS) -lm -lpthread -o $@

fuzz-tokenizer: $(FUZZ_DIR)/fuzz_tokenizer $(FUZZ_DIR)/gguf_seed
	@mkdir -p $(FUZZ_DIR)/tok_corpus $(FUZZ_DIR)/tok_artifacts $(FUZZ_DIR)/tok_seed_files
	$(FUZZ_DIR)/gguf_seed $(FUZZ_DIR)/tok_seed_files
	cp test/fixtures/spm_vocab.gguf $(FUZZ_DIR)/tok_seed_files/
	@for f in $(FUZZ_DIR)/tok_seed_files/*; do printf '\000' | cat - "$$f" > $(FUZZ_DIR)/tok_corpus/file_$$(basename "$$f"); done
	@printf '\001Hello world! caf\303\251 123' > $(FUZZ_DIR)/tok_corpus/text_hello
	@printf '\001<s> the student </s>  \t\n\377' > $(FUZZ_DIR)/tok_corpus/text_special
	ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz_tokenizer -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=$(FUZZ_DIR)/tok_artifacts/ -print_final_stats=1 $(FUZZ_DIR)/tok_corpus

.PHONY: fuzz-gguf fuzz-tokenizer
