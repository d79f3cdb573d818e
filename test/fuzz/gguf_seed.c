/*
 * gguf_seed.c -- writes the GGUF fuzzer's seed corpus: the unit tests'
 * sample file in a few variants (v3 with general.alignment, v2 with the
 * default alignment, no tensors).  Usage: gguf_seed DIR
 */
#include "gguf_writer.h"

static int
write_seed(const char *dir, const char *name, const gguf_sample_opts *opts)
{
	gguf_sample s;
	char		path[1024];
	FILE	   *f;
	int			ok;

	gguf_sample_build(&s, opts);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f)
	{
		perror(path);
		gguf_sample_free(&s);
		return 1;
	}
	ok = fwrite(s.w.p, 1, s.w.len, f) == s.w.len;
	ok = (fclose(f) == 0) && ok;
	gguf_sample_free(&s);
	if (!ok)
	{
		perror(path);
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const gguf_sample_opts v3 = {.version = 3, .alignment = 64};
	const gguf_sample_opts v2 = {.version = 2};
	const gguf_sample_opts bare = {.version = 3, .alignment = 8, .n_tensors = -1};

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	return write_seed(argv[1], "sample_v3.gguf", &v3) |
		write_seed(argv[1], "sample_v2.gguf", &v2) |
		write_seed(argv[1], "no_tensors.gguf", &bare);
}
