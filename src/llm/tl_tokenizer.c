/*
 * tl_tokenizer.c -- byte-level BPE from GGUF metadata.  See tl_tokenizer.h
 * for the pipeline, the pre-tokenizers and the limits of the Unicode
 * classifier.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* memmem */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_tokenizer.h"

#define TOK_MAX_VOCAB ((size_t) INT32_MAX - 1)

/* ------------------------------------------------------------ structure */

struct tl_tokenizer
{
	int32_t		n_vocab;
	char	   *arena;			/* every token's text, back to back */
	size_t	   *text_off;		/* n_vocab + 1 offsets into arena */
	uint8_t    *types;			/* tl_token_type per id */

	int32_t    *vocab_slots;	/* open addressing: id or -1 */
	size_t		vocab_mask;

	uint64_t   *merge_keys;		/* (left << 32 | right), UINT64_MAX empty */
	int32_t    *merge_rank;
	int32_t    *merge_result;
	size_t		merge_mask;
	size_t		n_merges;

	int32_t    *special;		/* candidates for the special split, longest first */
	size_t		n_special;

	int32_t		byte_id[256];	/* the token of each byte's symbol, or -1 */
	int16_t		cp_byte[324];	/* byte alphabet code point -> byte, or -1 */

	int32_t		bos,
				eos,
				unk,
				pad;
	bool		add_bos;
	tl_tok_pre	pre;
	char		pre_name[32];

	/* SentencePiece ("llama") vocabularies */
	bool		spm;
	bool		add_space_prefix;	/* a space before the text (and after specials) */
	int32_t    *spm_rank;		/* per id: dense rank of its score, best 0 */
	int32_t		spm_byte[256];	/* the <0xXX> token of each byte, or -1 */
};

/* --------------------------------------------------------- hash helpers */

static uint64_t
hash_bytes(const char *p, size_t n)
{
	uint64_t	h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
	{
		h ^= (uint8_t) p[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

static uint64_t
hash_pair(uint64_t key)
{
	key *= 0x9E3779B97F4A7C15ull;
	return key ^ (key >> 31);
}

static size_t
table_size(size_t n)
{
	size_t		cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	return cap;
}

static inline size_t
tok_len(const tl_tokenizer *tok, int32_t id)
{
	return tok->text_off[id + 1] - tok->text_off[id];
}

static inline const char *
tok_text(const tl_tokenizer *tok, int32_t id)
{
	return tok->arena + tok->text_off[id];
}

int32_t
tl_tokenizer_lookup(const tl_tokenizer *tok, const char *text, size_t len)
{
	size_t		i;

	if (!tok || (!text && len))
		return -1;
	i = (size_t) hash_bytes(text, len) & tok->vocab_mask;
	for (;;)
	{
		int32_t		id = tok->vocab_slots[i];

		if (id < 0)
			return -1;
		if (tok_len(tok, id) == len && (len == 0 || memcmp(tok_text(tok, id), text, len) == 0))
			return id;
		i = (i + 1) & tok->vocab_mask;
	}
}

/* Later duplicates replace earlier ones, as llama.cpp's map does. */
static void
vocab_insert(tl_tokenizer *tok, int32_t id)
{
	const char *text = tok_text(tok, id);
	size_t		len = tok_len(tok, id);
	size_t		i = (size_t) hash_bytes(text, len) & tok->vocab_mask;

	for (;;)
	{
		int32_t		other = tok->vocab_slots[i];

		if (other < 0 ||
			(tok_len(tok, other) == len && (len == 0 || memcmp(tok_text(tok, other), text, len) == 0)))
		{
			tok->vocab_slots[i] = id;
			return;
		}
		i = (i + 1) & tok->vocab_mask;
	}
}

/* Rank and result of merging left and right; false if no such merge. */
static inline bool
merge_find(const tl_tokenizer *tok, int32_t left, int32_t right, int32_t *rank, int32_t *result)
{
	uint64_t	key;
	size_t		i;

	if (left < 0 || right < 0)
		return false;
	key = ((uint64_t) (uint32_t) left << 32) | (uint32_t) right;
	i = (size_t) hash_pair(key) & tok->merge_mask;
	for (;;)
	{
		uint64_t	k = tok->merge_keys[i];

		if (k == UINT64_MAX)
			return false;
		if (k == key)
		{
			*rank = tok->merge_rank[i];
			*result = tok->merge_result[i];
			return true;
		}
		i = (i + 1) & tok->merge_mask;
	}
}

/* The first merge of a pair keeps its rank, as in llama.cpp. */
static void
merge_insert(tl_tokenizer *tok, int32_t left, int32_t right, int32_t rank, int32_t result)
{
	uint64_t	key = ((uint64_t) (uint32_t) left << 32) | (uint32_t) right;
	size_t		i = (size_t) hash_pair(key) & tok->merge_mask;

	for (;;)
	{
		uint64_t	k = tok->merge_keys[i];

		if (k == key)
			return;
		if (k == UINT64_MAX)
		{
			tok->merge_keys[i] = key;
			tok->merge_rank[i] = rank;
			tok->merge_result[i] = result;
			tok->n_merges++;
			return;
		}
		i = (i + 1) & tok->merge_mask;
	}
}

/* ---------------------------------------------------------------- UTF-8 */

/* Append code point cp (< 0x800 here) as UTF-8; returns bytes written. */
static int
utf8_put(char *dst, uint32_t cp)
{
	if (cp < 0x80)
	{
		dst[0] = (char) cp;
		return 1;
	}
	dst[0] = (char) (0xC0 | (cp >> 6));
	dst[1] = (char) (0x80 | (cp & 0x3F));
	return 2;
}

/*
 * Decode one code point at p (n > 0 bytes left).  Structure is checked
 * the way llama.cpp checks it (lead byte, continuation bytes); a bad
 * sequence is one byte, returned as UINT32_MAX (category "other").
 */
static uint32_t
utf8_next(const uint8_t *p, size_t n, size_t *used)
{
	uint8_t		c = p[0];
	size_t		k;
	uint32_t	cp;

	if (c < 0x80)
	{
		*used = 1;
		return c;
	}
	if ((c & 0xE0) == 0xC0)
	{
		k = 2;
		cp = c & 0x1F;
	}
	else if ((c & 0xF0) == 0xE0)
	{
		k = 3;
		cp = c & 0x0F;
	}
	else if ((c & 0xF8) == 0xF0)
	{
		k = 4;
		cp = c & 0x07;
	}
	else
	{
		*used = 1;
		return UINT32_MAX;
	}
	if (k > n)
	{
		*used = 1;
		return UINT32_MAX;
	}
	for (size_t i = 1; i < k; i++)
	{
		if ((p[i] & 0xC0) != 0x80)
		{
			*used = 1;
			return UINT32_MAX;
		}
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	*used = k;
	return cp;
}

/* ------------------------------------------------------ the classifier */

enum
{
	CAT_OTHER = 0,
	CAT_L = 1,
	CAT_N = 2,
	CAT_WS = 3,
	CAT_END = 4					/* past the end of the stretch */
};

typedef struct cat_range
{
	uint32_t	lo,
				hi;
	uint8_t		cat;
} cat_range;

/* Code points from U+0080 up, sorted; anything not listed is "other". */
static const cat_range cat_ranges[] = {
	{0x85, 0x85, CAT_WS}, {0xA0, 0xA0, CAT_WS}, {0xAA, 0xAA, CAT_L},
	{0xB2, 0xB3, CAT_N}, {0xB5, 0xB5, CAT_L}, {0xB9, 0xB9, CAT_N},
	{0xBA, 0xBA, CAT_L}, {0xBC, 0xBE, CAT_N}, {0xC0, 0xD6, CAT_L},
	{0xD8, 0xF6, CAT_L}, {0xF8, 0x2C1, CAT_L}, {0x2C6, 0x2D1, CAT_L},
	{0x2E0, 0x2E4, CAT_L}, {0x2EC, 0x2EC, CAT_L}, {0x2EE, 0x2EE, CAT_L},
	/* Greek and Coptic, Cyrillic, Armenian */
	{0x370, 0x374, CAT_L}, {0x376, 0x377, CAT_L}, {0x37A, 0x37D, CAT_L},
	{0x37F, 0x37F, CAT_L}, {0x386, 0x386, CAT_L}, {0x388, 0x38A, CAT_L},
	{0x38C, 0x38C, CAT_L}, {0x38E, 0x3A1, CAT_L}, {0x3A3, 0x3F5, CAT_L},
	{0x3F7, 0x481, CAT_L}, {0x48A, 0x52F, CAT_L}, {0x531, 0x556, CAT_L},
	{0x559, 0x559, CAT_L}, {0x560, 0x588, CAT_L},
	/* Hebrew, Arabic */
	{0x5D0, 0x5EA, CAT_L}, {0x5EF, 0x5F2, CAT_L}, {0x620, 0x64A, CAT_L},
	{0x660, 0x669, CAT_N}, {0x66E, 0x66F, CAT_L}, {0x671, 0x6D3, CAT_L},
	{0x6D5, 0x6D5, CAT_L}, {0x6E5, 0x6E6, CAT_L}, {0x6EE, 0x6EF, CAT_L},
	{0x6F0, 0x6F9, CAT_N}, {0x6FA, 0x6FC, CAT_L}, {0x6FF, 0x6FF, CAT_L},
	/* Devanagari, Thai */
	{0x904, 0x939, CAT_L}, {0x93D, 0x93D, CAT_L}, {0x950, 0x950, CAT_L},
	{0x958, 0x961, CAT_L}, {0x966, 0x96F, CAT_N}, {0x971, 0x980, CAT_L},
	{0xE01, 0xE30, CAT_L}, {0xE32, 0xE33, CAT_L}, {0xE40, 0xE46, CAT_L},
	{0xE50, 0xE59, CAT_N},
	/* Hangul Jamo */
	{0x1100, 0x11FF, CAT_L},
	{0x1680, 0x1680, CAT_WS},
	/* Latin Extended Additional */
	{0x1E00, 0x1EFF, CAT_L},
	/* spaces, super- and subscripts, number forms, enclosed numbers */
	{0x2000, 0x200A, CAT_WS}, {0x2028, 0x2029, CAT_WS}, {0x202F, 0x202F, CAT_WS},
	{0x205F, 0x205F, CAT_WS}, {0x2070, 0x2070, CAT_N}, {0x2071, 0x2071, CAT_L},
	{0x2074, 0x2079, CAT_N}, {0x207F, 0x207F, CAT_L}, {0x2080, 0x2089, CAT_N},
	{0x2090, 0x209C, CAT_L}, {0x2150, 0x2182, CAT_N}, {0x2183, 0x2184, CAT_L},
	{0x2185, 0x2189, CAT_N}, {0x2460, 0x249B, CAT_N}, {0x24EA, 0x24FF, CAT_N},
	/* CJK symbols, kana, bopomofo, Hangul compatibility, CJK ideographs */
	{0x3000, 0x3000, CAT_WS}, {0x3005, 0x3006, CAT_L}, {0x3007, 0x3007, CAT_N},
	{0x3021, 0x3029, CAT_N}, {0x3031, 0x3035, CAT_L}, {0x3038, 0x303A, CAT_N},
	{0x303B, 0x303C, CAT_L}, {0x3041, 0x3096, CAT_L}, {0x309D, 0x309F, CAT_L},
	{0x30A1, 0x30FA, CAT_L}, {0x30FC, 0x30FF, CAT_L}, {0x3105, 0x312F, CAT_L},
	{0x3131, 0x318E, CAT_L}, {0x3192, 0x3195, CAT_N}, {0x31A0, 0x31BF, CAT_L},
	{0x31F0, 0x31FF, CAT_L}, {0x3220, 0x3229, CAT_N}, {0x3248, 0x324F, CAT_N},
	{0x3251, 0x325F, CAT_N}, {0x3280, 0x3289, CAT_N}, {0x32B1, 0x32BF, CAT_N},
	{0x3400, 0x4DBF, CAT_L}, {0x4E00, 0x9FFF, CAT_L}, {0xA000, 0xA48C, CAT_L},
	/* Hangul syllables, compatibility ideographs, fullwidth forms */
	{0xAC00, 0xD7A3, CAT_L}, {0xD7B0, 0xD7C6, CAT_L}, {0xD7CB, 0xD7FB, CAT_L},
	{0xF900, 0xFA6D, CAT_L}, {0xFA70, 0xFAD9, CAT_L}, {0xFF10, 0xFF19, CAT_N},
	{0xFF21, 0xFF3A, CAT_L}, {0xFF41, 0xFF5A, CAT_L}, {0xFF66, 0xFFBE, CAT_L},
	{0xFFC2, 0xFFC7, CAT_L}, {0xFFCA, 0xFFCF, CAT_L}, {0xFFD2, 0xFFD7, CAT_L},
	{0xFFDA, 0xFFDC, CAT_L},
	/* mathematical digits, CJK extensions B-H and compatibility supplement */
	{0x1D7CE, 0x1D7FF, CAT_N}, {0x20000, 0x2A6DF, CAT_L}, {0x2A700, 0x2B739, CAT_L},
	{0x2B740, 0x2B81D, CAT_L}, {0x2B820, 0x2CEA1, CAT_L}, {0x2CEB0, 0x2EBE0, CAT_L},
	{0x2F800, 0x2FA1D, CAT_L}, {0x30000, 0x3134A, CAT_L}, {0x31350, 0x323AF, CAT_L},
};

static uint8_t
classify(uint32_t cp)
{
	size_t		lo = 0,
				hi = sizeof(cat_ranges) / sizeof(cat_ranges[0]);

	if (cp < 0x80)
	{
		if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
			return CAT_L;
		if (cp >= '0' && cp <= '9')
			return CAT_N;
		if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D))
			return CAT_WS;
		return CAT_OTHER;
	}
	while (lo < hi)
	{
		size_t		mid = (lo + hi) / 2;

		if (cp < cat_ranges[mid].lo)
			hi = mid;
		else if (cp > cat_ranges[mid].hi)
			lo = mid + 1;
		else
			return cat_ranges[mid].cat;
	}
	return CAT_OTHER;
}

/* ------------------------------------------------------------ encoding */

typedef struct heap_entry
{
	int32_t		rank;
	int32_t		left;
	int32_t		right;
	int32_t		left_id;
	int32_t		right_id;
	int32_t		result;
} heap_entry;

/* Scratch for one encode call; everything sized by the input length. */
typedef struct enc
{
	const tl_tokenizer *tok;
	const uint8_t *text;		/* the fragment being split */
	uint32_t   *cps;			/* its code points */
	uint8_t    *cats;
	size_t	   *offs;			/* byte offset of each code point, n + 1 */
	size_t		n_cps;
	/* BPE */
	int32_t    *sym_id;
	int32_t    *sym_prev;
	int32_t    *sym_next;
	heap_entry *heap;
	size_t		heap_len;
	/* SPM: the escaped fragment and the symbols' lengths */
	uint8_t    *spm_text;
	int32_t    *spm_len;
	/* output */
	int32_t    *out;
	size_t		n_out;
} enc;

static inline bool
heap_less(const heap_entry *a, const heap_entry *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void
heap_push(enc *e, heap_entry x)
{
	size_t		i = e->heap_len++;

	while (i > 0)
	{
		size_t		parent = (i - 1) / 2;

		if (!heap_less(&x, &e->heap[parent]))
			break;
		e->heap[i] = e->heap[parent];
		i = parent;
	}
	e->heap[i] = x;
}

static heap_entry
heap_pop(enc *e)
{
	heap_entry	top = e->heap[0];
	heap_entry	last = e->heap[--e->heap_len];
	size_t		n = e->heap_len;
	size_t		i = 0;

	for (;;)
	{
		size_t		c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c]))
			c++;
		if (!heap_less(&e->heap[c], &last))
			break;
		e->heap[i] = e->heap[c];
		i = c;
	}
	if (n > 0)
		e->heap[i] = last;
	return top;
}

static void
try_pair(enc *e, int32_t left, int32_t right)
{
	heap_entry	x;

	if (left < 0 || right < 0)
		return;
	x.left = left;
	x.right = right;
	x.left_id = e->sym_id[left];
	x.right_id = e->sym_id[right];
	if (merge_find(e->tok, x.left_id, x.right_id, &x.rank, &x.result))
		heap_push(e, x);
}

#define SYM_DEAD (-2)

/* BPE over the bytes [b0, b1) of the current fragment; ids to e->out. */
static void
bpe_piece(enc *e, size_t b0, size_t b1)
{
	const tl_tokenizer *tok = e->tok;
	int32_t		m = (int32_t) (b1 - b0);

	if (m == 1)
	{
		int32_t		id = tok->byte_id[e->text[b0]];

		if (id >= 0)
			e->out[e->n_out++] = id;
		return;
	}
	for (int32_t i = 0; i < m; i++)
	{
		e->sym_id[i] = tok->byte_id[e->text[b0 + (size_t) i]];
		e->sym_prev[i] = i - 1;
		e->sym_next[i] = i + 1 < m ? i + 1 : -1;
	}
	e->heap_len = 0;
	for (int32_t i = 0; i + 1 < m; i++)
		try_pair(e, i, i + 1);
	while (e->heap_len > 0)
	{
		heap_entry	x = heap_pop(e);
		int32_t		l = x.left,
					r = x.right;

		if (e->sym_id[l] != x.left_id || e->sym_id[r] != x.right_id || e->sym_next[l] != r)
			continue;
		e->sym_id[l] = x.result;
		e->sym_next[l] = e->sym_next[r];
		if (e->sym_next[r] >= 0)
			e->sym_prev[e->sym_next[r]] = l;
		e->sym_id[r] = SYM_DEAD;
		e->sym_next[r] = -1;
		try_pair(e, e->sym_prev[l], l);
		try_pair(e, l, e->sym_next[l]);
	}
	/* Symbols whose byte has no token are dropped, as llama.cpp drops them. */
	for (int32_t i = 0; i >= 0; i = e->sym_next[i])
		if (e->sym_id[i] >= 0)
			e->out[e->n_out++] = e->sym_id[i];
}

static inline uint8_t
cat_at(const enc *e, size_t pos, size_t end)
{
	return pos < end ? e->cats[pos] : CAT_END;
}

static inline uint32_t
cp_at(const enc *e, size_t pos, size_t end)
{
	return pos < end ? e->cps[pos] : UINT32_MAX;
}

static inline void
emit(enc *e, size_t c0, size_t c1)
{
	if (c1 > c0)
		bpe_piece(e, e->offs[c0], e->offs[c1]);
}

static inline bool
is_cat_other(uint8_t c)
{
	return c == CAT_OTHER;
}

/* The contractions 's 't 're 've 'm 'll 'd at pos: their length or 0. */
static size_t
contraction(const enc *e, size_t pos, size_t end, bool fold)
{
	uint32_t	a,
				b;

	if (e->cps[pos] != '\'' || pos + 1 >= end)
		return 0;
	a = e->cps[pos + 1];
	if (fold && a >= 'A' && a <= 'Z')
		a += 32;
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return 2;
	if (pos + 2 >= end)
		return 0;
	b = e->cps[pos + 2];
	if (fold && b >= 'A' && b <= 'Z')
		b += 32;
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return 3;
	return 0;
}

/*
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * over code points [ini, end).
 */
/*
 * The end of the gpt2 and llama3 patterns at pos, with nws whitespace
 * characters there: "\s+(?!\S)" keeps the last space for the next word,
 * "\s+" takes a whitespace run at the end, else one character alone.
 * Returns the position after what was emitted.
 */
static size_t
split_whitespace_tail(enc *e, size_t pos, size_t nws, size_t end)
{
	if (nws > 1 && pos + nws < end)
		nws--;
	else if (nws == 0)
		nws = 1;
	emit(e, pos, pos + nws);
	return pos + nws;
}

static void
split_gpt2(enc *e, size_t ini, size_t end)
{
	size_t		pos = ini;

	while (pos < end)
	{
		uint32_t	cp = e->cps[pos];
		uint8_t		cat2;
		size_t		k,
					p,
					nws;

		if ((k = contraction(e, pos, end, false)) > 0)
		{
			emit(e, pos, pos + k);
			pos += k;
			continue;
		}
		cat2 = cp == ' ' ? cat_at(e, pos + 1, end) : e->cats[pos];
		if (cat2 == CAT_L || cat2 == CAT_N || is_cat_other(cat2))
		{
			p = pos + (cp == ' ');
			while (cat_at(e, p, end) == cat2)
				p++;
			emit(e, pos, p);
			pos = p;
			continue;
		}
		nws = 0;
		while (cat_at(e, pos + nws, end) == CAT_WS)
			nws++;
		pos = split_whitespace_tail(e, pos, nws, end);
	}
}

/* Every \p{N} alone, the stretches between them through split_gpt2. */
static void
split_smollm(enc *e, size_t ini, size_t end)
{
	size_t		pos = ini;

	while (pos < end)
	{
		size_t		q = pos;

		if (e->cats[pos] == CAT_N)
		{
			emit(e, pos, pos + 1);
			pos++;
			continue;
		}
		while (q < end && e->cats[q] != CAT_N)
			q++;
		split_gpt2(e, pos, q);
		pos = q;
	}
}

/*
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
static void
split_llama3(enc *e, size_t ini, size_t end, size_t max_digits)
{
	size_t		pos = ini;

	while (pos < end)
	{
		uint32_t	cp = e->cps[pos];
		uint8_t		cat = e->cats[pos];
		uint8_t		cat2;
		size_t		k,
					p,
					nws,
					last_rn;

		if ((k = contraction(e, pos, end, true)) > 0)
		{
			emit(e, pos, pos + k);
			pos += k;
			continue;
		}
		if (!(cp == '\r' || cp == '\n' || cat == CAT_N) &&
			(cat == CAT_L || cat_at(e, pos + 1, end) == CAT_L))
		{
			p = pos + 1;
			while (cat_at(e, p, end) == CAT_L)
				p++;
			emit(e, pos, p);
			pos = p;
			continue;
		}
		if (cat == CAT_N)
		{
			p = pos;
			while (cat_at(e, p, end) == CAT_N && p - pos < max_digits)
				p++;
			emit(e, pos, p);
			pos = p;
			continue;
		}
		cat2 = cp == ' ' ? cat_at(e, pos + 1, end) : cat;
		if (is_cat_other(cat2))
		{
			p = pos + (cp == ' ');
			while (cat_at(e, p, end) == CAT_OTHER)
				p++;
			while (cp_at(e, p, end) == '\r' || cp_at(e, p, end) == '\n')
				p++;
			emit(e, pos, p);
			pos = p;
			continue;
		}
		nws = 0;
		last_rn = 0;
		while (cat_at(e, pos + nws, end) == CAT_WS)
		{
			uint32_t	c = e->cps[pos + nws];

			if (c == '\r' || c == '\n')
				last_rn = pos + nws + 1;
			nws++;
		}
		if (last_rn > 0)
		{
			emit(e, pos, last_rn);
			pos = last_rn;
			continue;
		}
		pos = split_whitespace_tail(e, pos, nws, end);
	}
}

/*
 * SentencePiece (llama.cpp's SPM tokenizer): the text, spaces written as
 * U+2581 ("\xE2\x96\x81"), starts as one symbol per UTF-8 character
 * (the lead byte's length, unchecked, as llama.cpp cuts); adjacent
 * symbols whose concatenation is a token merge, the best-scored first
 * (lower left position among equals); a final symbol that is not a
 * token becomes its bytes' <0xXX> tokens (or unk).
 */
#define SPM_SPACE "\xE2\x96\x81"

static void
spm_try_pair(enc *e, const uint8_t *text, const int32_t *off, const int32_t *len,
			 int32_t left, int32_t right)
{
	const tl_tokenizer *tok = e->tok;
	heap_entry	x;
	int32_t		id;

	if (left < 0 || right < 0)
		return;
	id = tl_tokenizer_lookup(tok, (const char *) text + off[left], (size_t) (len[left] + len[right]));
	if (id < 0)
		return;
	x.rank = tok->spm_rank[id];
	x.left = left;
	x.right = right;
	x.left_id = len[left];		/* lengths at push time: a later merge makes it stale */
	x.right_id = len[right];
	x.result = id;
	heap_push(e, x);
}

static void
spm_emit_symbol(enc *e, const uint8_t *text, int32_t off, int32_t len)
{
	const tl_tokenizer *tok = e->tok;
	int32_t		id = tl_tokenizer_lookup(tok, (const char *) text + off, (size_t) len);

	if (id >= 0)
	{
		e->out[e->n_out++] = id;
		return;
	}
	for (int32_t b = 0; b < len; b++)
	{
		int32_t		byte_tok = tok->spm_byte[text[off + b]];

		if (byte_tok >= 0)
			e->out[e->n_out++] = byte_tok;
		else if (tok->unk >= 0)
			e->out[e->n_out++] = tok->unk;
	}
}

/* SPM over text[0..len) (already escaped); symbols in e->sym_* arrays. */
static void
spm_piece(enc *e, const uint8_t *text, int32_t len)
{
	static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
	int32_t    *off = e->sym_id,	/* reused: byte offset of each symbol */
			   *sl = e->spm_len,
			   *prev = e->sym_prev,
			   *next = e->sym_next;
	int32_t		n = 0;

	for (int32_t at = 0; at < len; n++)
	{
		int32_t		k = lead_len[text[at] >> 4];

		off[n] = at;
		sl[n] = k < len - at ? k : len - at;
		prev[n] = n - 1;
		next[n] = -1;
		if (n > 0)
			next[n - 1] = n;
		at += sl[n];
	}
	e->heap_len = 0;
	for (int32_t i = 0; i + 1 < n; i++)
		spm_try_pair(e, text, off, sl, i, i + 1);
	while (e->heap_len > 0)
	{
		heap_entry	x = heap_pop(e);
		int32_t		l = x.left,
					r = x.right;

		if (sl[l] != x.left_id || sl[r] != x.right_id || next[l] != r || sl[l] == 0 || sl[r] == 0)
			continue;
		sl[l] += sl[r];
		sl[r] = 0;
		next[l] = next[r];
		if (next[r] >= 0)
			prev[next[r]] = l;
		spm_try_pair(e, text, off, sl, prev[l], l);
		spm_try_pair(e, text, off, sl, l, next[l]);
	}
	for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = next[i])
		spm_emit_symbol(e, text, off[i], sl[i]);
}

/* Escape a raw fragment (with the prefix space when asked) and run SPM. */
static void
spm_encode_raw(enc *e, const uint8_t *text, size_t len, bool prefix_space)
{
	size_t		o = 0;

	if (prefix_space)
	{
		memcpy(e->spm_text, SPM_SPACE, 3);
		o = 3;
	}
	for (size_t i = 0; i < len; i++)
	{
		if (text[i] == ' ')
		{
			memcpy(e->spm_text + o, SPM_SPACE, 3);
			o += 3;
		}
		else
			e->spm_text[o++] = text[i];
	}
	if (o > 0)
		spm_piece(e, e->spm_text, (int32_t) o);
}

/* Pre-tokenize and BPE the raw bytes text[0..len). */
static void
encode_raw(enc *e, const uint8_t *text, size_t len)
{
	size_t		n = 0;

	if (len == 0)
		return;
	e->text = text;
	for (size_t b = 0; b < len;)
	{
		size_t		used;
		uint32_t	cp = utf8_next(text + b, len - b, &used);

		e->cps[n] = cp;
		e->cats[n] = classify(cp);
		e->offs[n] = b;
		n++;
		b += used;
	}
	e->offs[n] = len;
	e->n_cps = n;
	switch (e->tok->pre)
	{
		case TL_TOK_PRE_GPT2:
			split_gpt2(e, 0, n);
			break;
		case TL_TOK_PRE_SMOLLM:
			split_smollm(e, 0, n);
			break;
		case TL_TOK_PRE_LLAMA3:
			split_llama3(e, 0, n, 3);
			break;
		case TL_TOK_PRE_QWEN2:
			split_llama3(e, 0, n, 1);
			break;
	}
}

/* A stretch of the input: raw text (id -1) or a special token. */
typedef struct fragment
{
	size_t		start;
	size_t		len;
	int32_t		id;
} fragment;

static const void *
find_bytes(const uint8_t *hay, size_t n, const char *needle, size_t m)
{
	if (m == 0 || m > n)
		return NULL;
	return memmem(hay, n, needle, m);
}

static inline bool
special_eligible(const tl_tokenizer *tok, int32_t id, unsigned flags)
{
	return tok->types[id] == TL_TOKEN_USER_DEFINED || (flags & TL_TOK_PARSE_SPECIAL);
}

/*
 * How many places the eligible special tokens' texts start at, overlaps
 * counted: a bound on the special fragments split_special can make.
 */
static size_t
count_special(const tl_tokenizer *tok, const uint8_t *text, size_t len, unsigned flags)
{
	size_t		count = 0;

	for (size_t s = 0; s < tok->n_special; s++)
	{
		int32_t		id = tok->special[s];
		const char *needle = tok_text(tok, id);
		size_t		m = tok_len(tok, id);
		size_t		at = 0;
		const uint8_t *hit;

		if (!special_eligible(tok, id, flags))
			continue;
		while ((hit = find_bytes(text + at, len - at, needle, m)) != NULL)
		{
			count++;
			at = (size_t) (hit - text) + 1;
		}
	}
	return count;
}

/*
 * Cut special tokens out of the text, longest first, each over every raw
 * fragment left by the ones before (llama.cpp's order).  frags and spare
 * have room for 2 * count_special() + 1 entries.
 */
static size_t
split_special(const tl_tokenizer *tok, const uint8_t *text, size_t len, unsigned flags,
			  fragment *frags, fragment *spare)
{
	size_t		n = 1;

	frags[0].start = 0;
	frags[0].len = len;
	frags[0].id = -1;
	for (size_t s = 0; s < tok->n_special; s++)
	{
		int32_t		id = tok->special[s];
		const char *needle = tok_text(tok, id);
		size_t		m = tok_len(tok, id);
		size_t		n_new = 0;
		bool		changed = false;

		if (!special_eligible(tok, id, flags))
			continue;
		for (size_t f = 0; f < n; f++)
		{
			size_t		at = frags[f].start,
						stop = frags[f].start + frags[f].len;
			const uint8_t *hit;

			if (frags[f].id >= 0)
			{
				spare[n_new++] = frags[f];
				continue;
			}
			while ((hit = find_bytes(text + at, stop - at, needle, m)) != NULL)
			{
				size_t		h = (size_t) (hit - text);

				if (h > at)
					spare[n_new++] = (fragment) {at, h - at, -1};
				spare[n_new++] = (fragment) {h, m, id};
				at = h + m;
				changed = true;
			}
			if (stop > at)
				spare[n_new++] = (fragment) {at, stop - at, -1};
		}
		if (!changed)
			continue;
		memcpy(frags, spare, n_new * sizeof(fragment));
		n = n_new;
	}
	return n;
}

tl_status
tl_tokenizer_encode(const tl_tokenizer *tok, const char *text, size_t len,
					unsigned flags, int32_t **ids, size_t *n_ids)
{
	enc			e;
	fragment   *frags = NULL,
			   *spare = NULL;
	size_t		n_frags,
				max_frag = 0;
	bool		bos;
	tl_status	rc = TL_OK;

	if (!ids || !n_ids)
		return tl_fail(TL_ERR_ARG, "tokenizer encode: NULL output");
	*ids = NULL;
	*n_ids = 0;
	if (!tok)
		return tl_fail(TL_ERR_ARG, "tokenizer encode: NULL tokenizer");
	if (!text && len)
		return tl_fail(TL_ERR_ARG, "tokenizer encode: NULL text");
	if (len > (size_t) INT32_MAX - 2)
		return tl_fail(TL_ERR_ARG, "tokenizer encode: text of %zu bytes is too long", len);
	bos = tok->bos >= 0 && ((flags & TL_TOK_FORCE_BOS) || ((flags & TL_TOK_ADD_BOS) && tok->add_bos));
	if (len == 0 && !bos)
		return TL_OK;

	memset(&e, 0, sizeof(e));
	e.tok = tok;
	/*
	 * BOS plus one id per byte, except that SentencePiece writes a space as
	 * three bytes (U+2581), each of which may fall back to a byte token
	 * (and the prefix space too)
	 */
	if (len > ((size_t) INT32_MAX - 4) / 3)
		return tl_fail(TL_ERR_ARG, "tokenizer encode: text of %zu bytes is too long", len);
	e.out = tl_alloc(tok->spm ? 3 * len + 4 : len + 1, sizeof(int32_t));
	n_frags = len ? 2 * count_special(tok, (const uint8_t *) text, len, flags) + 1 : 1;
	frags = tl_alloc(n_frags, sizeof(fragment));
	spare = tl_alloc(n_frags, sizeof(fragment));
	if (!e.out || !frags || !spare)
	{
		rc = tl_fail(TL_ERR_NOMEM, "tokenizer encode: out of memory for %zu bytes", len);
		goto done;
	}
	if (bos)
		e.out[e.n_out++] = tok->bos;
	n_frags = len ? split_special(tok, (const uint8_t *) text, len, flags, frags, spare) : 0;
	for (size_t f = 0; f < n_frags; f++)
		if (frags[f].id < 0 && frags[f].len > max_frag)
			max_frag = frags[f].len;
	if (max_frag > 0 && tok->spm)
	{
		/* the escaped text: a space may become three bytes, plus the prefix */
		size_t		m = 3 * max_frag + 3;

		e.spm_text = tl_alloc(m, 1);
		e.spm_len = tl_alloc(m, sizeof(int32_t));
		e.sym_id = tl_alloc(m, sizeof(int32_t));
		e.sym_prev = tl_alloc(m, sizeof(int32_t));
		e.sym_next = tl_alloc(m, sizeof(int32_t));
		e.heap = tl_alloc(3 * m, sizeof(heap_entry));
		/* each raw byte may become one byte token, and the prefix space three */
		if (!e.spm_text || !e.spm_len || !e.sym_id || !e.sym_prev || !e.sym_next || !e.heap)
		{
			rc = tl_fail(TL_ERR_NOMEM, "tokenizer encode: out of memory for %zu bytes", len);
			goto done;
		}
	}
	else if (max_frag > 0)
	{
		e.cps = tl_alloc(max_frag, sizeof(uint32_t));
		e.cats = tl_alloc(max_frag, 1);
		e.offs = tl_alloc(max_frag + 1, sizeof(size_t));
		e.sym_id = tl_alloc(max_frag, sizeof(int32_t));
		e.sym_prev = tl_alloc(max_frag, sizeof(int32_t));
		e.sym_next = tl_alloc(max_frag, sizeof(int32_t));
		/* m - 1 initial pairs and at most 2 per merge, at most m - 1 merges */
		e.heap = tl_alloc(3 * max_frag, sizeof(heap_entry));
		if (!e.cps || !e.cats || !e.offs || !e.sym_id || !e.sym_prev || !e.sym_next || !e.heap)
		{
			rc = tl_fail(TL_ERR_NOMEM, "tokenizer encode: out of memory for %zu bytes", len);
			goto done;
		}
	}
	for (size_t f = 0; f < n_frags; f++)
	{
		if (frags[f].id >= 0)
			e.out[e.n_out++] = frags[f].id;
		else if (tok->spm)
			/* llama.cpp: the space prefix at the start and after a special token */
			spm_encode_raw(&e, (const uint8_t *) text + frags[f].start, frags[f].len,
						   tok->add_space_prefix && (f == 0 || frags[f - 1].id >= 0));
		else
			encode_raw(&e, (const uint8_t *) text + frags[f].start, frags[f].len);
	}

done:
	tl_free(e.spm_text);
	tl_free(e.spm_len);
	tl_free(e.cps);
	tl_free(e.cats);
	tl_free(e.offs);
	tl_free(e.sym_id);
	tl_free(e.sym_prev);
	tl_free(e.sym_next);
	tl_free(e.heap);
	tl_free(frags);
	tl_free(spare);
	if (rc != TL_OK || e.n_out == 0)
	{
		tl_free(e.out);
		return rc;
	}
	*ids = e.out;
	*n_ids = e.n_out;
	return TL_OK;
}

/* ------------------------------------------------------------ decoding */

static bool
is_special_type(uint8_t t)
{
	return t == TL_TOKEN_CONTROL || t == TL_TOKEN_UNKNOWN || t == TL_TOKEN_USER_DEFINED;
}

/*
 * One SPM piece into out (room for m bytes: U+2581 shrinks to a space, a
 * byte token to one byte); returns the bytes written.
 */
static size_t
spm_decode_piece(const tl_tokenizer *tok, int32_t id, uint8_t type, const uint8_t *p, size_t m,
				 char *out, bool strip_space)
{
	size_t		o = 0;

	if (type == TL_TOKEN_BYTE)
	{
		for (int b = 0; b < 256; b++)
			if (tok->spm_byte[b] == id)
			{
				out[0] = (char) b;
				return 1;
			}
	}
	for (size_t i = 0; i < m;)
	{
		if (i + 3 <= m && memcmp(p + i, SPM_SPACE, 3) == 0)
		{
			if (!(strip_space && o == 0 && i == 0))
				out[o++] = ' ';
			i += 3;
		}
		else
			out[o++] = (char) p[i++];
	}
	return o;
}

tl_status
tl_tokenizer_decode(const tl_tokenizer *tok, const int32_t *ids, size_t n,
					unsigned flags, char **text, size_t *len)
{
	size_t		total = 0,
				at = 0;
	char	   *out;
	bool		started = false;	/* a piece other than BOS was written */

	if (!text || !len)
		return tl_fail(TL_ERR_ARG, "tokenizer decode: NULL output");
	*text = NULL;
	*len = 0;
	if (!tok || (!ids && n))
		return tl_fail(TL_ERR_ARG, "tokenizer decode: NULL argument");
	for (size_t i = 0; i < n; i++)
	{
		if (ids[i] < 0 || ids[i] >= tok->n_vocab)
			return tl_fail(TL_ERR_ARG, "tokenizer decode: id %d at position %zu is out of range [0, %d)",
						   ids[i], i, tok->n_vocab);
		total += tok_len(tok, ids[i]);
	}
	out = tl_alloc(total + 1, 1);
	if (!out)
		return tl_fail(TL_ERR_NOMEM, "tokenizer decode: out of memory for %zu bytes", total);
	for (size_t i = 0; i < n; i++)
	{
		int32_t		id = ids[i];
		uint8_t		type = tok->types[id];
		const uint8_t *p = (const uint8_t *) tok_text(tok, id);
		size_t		m = tok_len(tok, id);

		if (is_special_type(type))
		{
			if ((flags & TL_TOK_SKIP_SPECIAL) && type != TL_TOKEN_USER_DEFINED)
				continue;
			memcpy(out + at, p, m);
			at += m;
			if (id != tok->bos)
				started = true;
			continue;
		}
		if (tok->spm)
		{
			at += spm_decode_piece(tok, id, type, p, m, out + at,
								   (flags & TL_TOK_STRIP_PREFIX) && !started);
			started = true;
			continue;
		}
		/* back through the byte alphabet; code points outside it verbatim */
		for (size_t b = 0; b < m;)
		{
			size_t		used;
			uint32_t	cp = utf8_next(p + b, m - b, &used);

			if (cp < 324 && tok->cp_byte[cp] >= 0)
				out[at++] = (char) tok->cp_byte[cp];
			else
			{
				memcpy(out + at, p + b, used);
				at += used;
			}
			b += used;
		}
	}
	out[at] = '\0';
	*text = out;
	*len = at;
	return TL_OK;
}

/* ------------------------------------------------------------- loading */

static const struct
{
	const char *name;
	tl_tok_pre	pre;
}			pre_names[] = {
	{"gpt2", TL_TOK_PRE_GPT2}, {"mpt", TL_TOK_PRE_GPT2}, {"olmo", TL_TOK_PRE_GPT2},
	{"jais", TL_TOK_PRE_GPT2},
	{"smollm", TL_TOK_PRE_SMOLLM}, {"starcoder", TL_TOK_PRE_SMOLLM},
	{"refact", TL_TOK_PRE_SMOLLM}, {"command-r", TL_TOK_PRE_SMOLLM},
	{"codeshell", TL_TOK_PRE_SMOLLM}, {"exaone", TL_TOK_PRE_SMOLLM},
	{"minerva", TL_TOK_PRE_SMOLLM},
	{"llama-bpe", TL_TOK_PRE_LLAMA3}, {"llama3", TL_TOK_PRE_LLAMA3},
	{"llama-v3", TL_TOK_PRE_LLAMA3}, {"smaug-bpe", TL_TOK_PRE_LLAMA3},
	{"falcon3", TL_TOK_PRE_LLAMA3},
	{"qwen2", TL_TOK_PRE_QWEN2}, {"deepseek-r1-qwen", TL_TOK_PRE_QWEN2},
};

/* An optional special id: -1 when absent or negative. */
static tl_status
get_special(const tl_gguf *g, const char *key, int32_t n_vocab, int32_t *out)
{
	int32_t		v;

	*out = -1;
	if (!tl_gguf_find(g, key))
		return TL_OK;
	TL_TRY(tl_gguf_get_i32(g, key, &v));
	if (v >= n_vocab)
		return tl_fail(TL_ERR_ARG, "tokenizer: %s = %d is out of range for a vocabulary of %d",
					   key, v, n_vocab);
	*out = v < 0 ? -1 : v;
	return TL_OK;
}

typedef struct special_sort
{
	size_t		len;
	int32_t		id;
} special_sort;

static int
cmp_special(const void *a, const void *b)
{
	const special_sort *x = a,
			   *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static tl_status
load_tokens(tl_tokenizer *tok, const tl_gguf *g)
{
	const tl_gguf_kv *kv;
	size_t		total = 0;

	TL_TRY(tl_gguf_get_strings(g, "tokenizer.ggml.tokens", &kv));
	if (kv->count == 0)
		return tl_fail(TL_ERR_ARG, "tokenizer: tokenizer.ggml.tokens is empty");
	if (kv->count > TOK_MAX_VOCAB)
		return tl_fail(TL_ERR_ARG, "tokenizer: %zu tokens are too many", kv->count);
	tok->n_vocab = (int32_t) kv->count;
	tok->text_off = tl_alloc(kv->count + 1, sizeof(size_t));
	tok->types = tl_alloc(kv->count, 1);
	if (!tok->text_off || !tok->types)
		return tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory for %zu tokens", kv->count);
	for (size_t i = 0; i < kv->count; i++)
	{
		tl_gguf_str s;

		TL_TRY(tl_gguf_array_string(kv, i, &s));
		tok->text_off[i] = total;
		total += s.len;
	}
	tok->text_off[kv->count] = total;
	tok->arena = tl_alloc(total ? total : 1, 1);
	if (!tok->arena)
		return tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of token text", total);
	for (size_t i = 0; i < kv->count; i++)
	{
		tl_gguf_str s;

		TL_TRY(tl_gguf_array_string(kv, i, &s));
		if (s.len)
			memcpy(tok->arena + tok->text_off[i], s.ptr, s.len);
	}

	tok->vocab_mask = table_size(kv->count) - 1;
	tok->vocab_slots = tl_alloc(tok->vocab_mask + 1, sizeof(int32_t));
	if (!tok->vocab_slots)
		return tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory for the vocabulary table");
	memset(tok->vocab_slots, 0xFF, (tok->vocab_mask + 1) * sizeof(int32_t));
	for (int32_t id = 0; id < tok->n_vocab; id++)
		vocab_insert(tok, id);
	return TL_OK;
}

static tl_status
load_types(tl_tokenizer *tok, const tl_gguf *g)
{
	const tl_gguf_kv *kv;

	if (!tl_gguf_find(g, "tokenizer.ggml.token_type"))
	{
		memset(tok->types, TL_TOKEN_NORMAL, (size_t) tok->n_vocab);
		return TL_OK;
	}
	TL_TRY(tl_gguf_get_ints(g, "tokenizer.ggml.token_type", &kv));
	if (kv->count != (size_t) tok->n_vocab)
		return tl_fail(TL_ERR_ARG, "tokenizer: tokenizer.ggml.token_type has %zu entries for %d tokens",
					   kv->count, tok->n_vocab);
	for (size_t i = 0; i < kv->count; i++)
	{
		int64_t		t;

		TL_TRY(tl_gguf_array_int(kv, i, &t));
		if (t < TL_TOKEN_UNDEFINED || t > TL_TOKEN_BYTE)
			return tl_fail(TL_ERR_ARG, "tokenizer: token %zu has unknown type %lld", i, (long long) t);
		tok->types[i] = (uint8_t) (t == TL_TOKEN_UNDEFINED ? TL_TOKEN_NORMAL : t);
	}
	return TL_OK;
}

static tl_status
load_merges(tl_tokenizer *tok, const tl_gguf *g)
{
	const tl_gguf_kv *kv;
	size_t		longest = 0;
	char	   *buf;
	tl_status	rc = TL_OK;

	TL_TRY(tl_gguf_get_strings(g, "tokenizer.ggml.merges", &kv));
	if (kv->count > (size_t) INT32_MAX)
		return tl_fail(TL_ERR_ARG, "tokenizer: %zu merges are too many", kv->count);
	for (size_t i = 0; i < kv->count; i++)
	{
		tl_gguf_str s;

		TL_TRY(tl_gguf_array_string(kv, i, &s));
		if (s.len > longest)
			longest = s.len;
	}
	tok->merge_mask = table_size(kv->count) - 1;
	tok->merge_keys = tl_alloc(tok->merge_mask + 1, sizeof(uint64_t));
	tok->merge_rank = tl_alloc(tok->merge_mask + 1, sizeof(int32_t));
	tok->merge_result = tl_alloc(tok->merge_mask + 1, sizeof(int32_t));
	buf = tl_alloc(longest + 1, 1);
	if (!tok->merge_keys || !tok->merge_rank || !tok->merge_result || !buf)
	{
		tl_free(buf);
		return tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory for %zu merges", kv->count);
	}
	memset(tok->merge_keys, 0xFF, (tok->merge_mask + 1) * sizeof(uint64_t));
	for (size_t i = 0; i < kv->count && rc == TL_OK; i++)
	{
		tl_gguf_str s;
		const char *space;
		size_t		la;
		int32_t		a,
					b,
					r;

		rc = tl_gguf_array_string(kv, i, &s);
		if (rc != TL_OK)
			break;
		/* the separator is the first space after the first byte */
		space = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
		if (!space || (size_t) (space - s.ptr) + 1 >= s.len)
		{
			rc = tl_fail(TL_ERR_ARG, "tokenizer: merge %zu is not two tokens separated by a space", i);
			break;
		}
		la = (size_t) (space - s.ptr);
		memcpy(buf, s.ptr, la);
		memcpy(buf + la, space + 1, s.len - la - 1);
		a = tl_tokenizer_lookup(tok, s.ptr, la);
		b = tl_tokenizer_lookup(tok, space + 1, s.len - la - 1);
		r = tl_tokenizer_lookup(tok, buf, s.len - 1);
		if (a < 0 || b < 0 || r < 0)
		{
			rc = tl_fail(TL_ERR_ARG, "tokenizer: merge %zu names %s that is not in the vocabulary", i,
						 a < 0 ? "a left token" : b < 0 ? "a right token" : "a result");
			break;
		}
		merge_insert(tok, a, b, (int32_t) i, r);
	}
	tl_free(buf);
	return rc;
}

/* BOS, EOS, unknown and padding ids, and whether BOS is added. */
static tl_status
load_special_ids(tl_tokenizer *tok, const tl_gguf *g, bool add_bos_default)
{
	TL_TRY(get_special(g, "tokenizer.ggml.bos_token_id", tok->n_vocab, &tok->bos));
	TL_TRY(get_special(g, "tokenizer.ggml.eos_token_id", tok->n_vocab, &tok->eos));
	TL_TRY(get_special(g, "tokenizer.ggml.unknown_token_id", tok->n_vocab, &tok->unk));
	TL_TRY(get_special(g, "tokenizer.ggml.padding_token_id", tok->n_vocab, &tok->pad));
	tok->add_bos = add_bos_default;
	if (tl_gguf_find(g, "tokenizer.ggml.add_bos_token"))
		TL_TRY(tl_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &tok->add_bos));
	return TL_OK;
}

static tl_status load_special_split(tl_tokenizer *tok);

static int
cmp_score_desc(const void *a, const void *b, void *arg)
{
	const float *score = arg;
	int32_t		x = *(const int32_t *) a,
				y = *(const int32_t *) b;

	if (score[x] != score[y])
		return score[x] > score[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * A SentencePiece vocabulary: tokens, types, scores (ranked once, so the
 * merge heap compares integers), byte tokens, the space prefix.
 */
static tl_status
load_spm(tl_tokenizer *tok, const tl_gguf *g)
{
	const tl_gguf_kv *kv;
	float	   *score;
	int32_t    *order;
	tl_status	rc = TL_OK;

	tok->spm = true;
	tok->pre = TL_TOK_PRE_GPT2;	/* unused by SPM */
	strcpy(tok->pre_name, "llama");
	TL_TRY(load_tokens(tok, g));
	TL_TRY(load_types(tok, g));
	TL_TRY(tl_gguf_get_floats(g, "tokenizer.ggml.scores", &kv));
	if (kv->count != (size_t) tok->n_vocab)
		return tl_fail(TL_ERR_ARG, "tokenizer: tokenizer.ggml.scores has %zu entries for %d tokens",
					   kv->count, tok->n_vocab);
	score = tl_alloc((size_t) tok->n_vocab, sizeof(float));
	order = tl_alloc((size_t) tok->n_vocab, sizeof(int32_t));
	tok->spm_rank = tl_alloc((size_t) tok->n_vocab, sizeof(int32_t));
	if (!score || !order || !tok->spm_rank)
		rc = tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory for %d scores", tok->n_vocab);
	else
		rc = tl_gguf_copy_f32(kv, score, kv->count);
	for (int32_t i = 0; rc == TL_OK && i < tok->n_vocab; i++)
	{
		if (!(score[i] == score[i]))
			rc = tl_fail(TL_ERR_ARG, "tokenizer: the score of token %d is not a number", i);
		order[i] = i;
	}
	if (rc == TL_OK)
	{
		int32_t		rank = 0;

		qsort_r(order, (size_t) tok->n_vocab, sizeof(int32_t), cmp_score_desc, score);
		for (int32_t i = 0; i < tok->n_vocab; i++)
		{
			if (i > 0 && score[order[i]] != score[order[i - 1]])
				rank++;
			tok->spm_rank[order[i]] = rank;
		}
	}
	tl_free(score);
	tl_free(order);
	TL_TRY(rc);

	for (int b = 0; b < 256; b++)
	{
		char		name[8];

		snprintf(name, sizeof(name), "<0x%02X>", b);
		tok->spm_byte[b] = tl_tokenizer_lookup(tok, name, 6);
	}
	TL_TRY(load_special_ids(tok, g, true));
	tok->add_space_prefix = true;
	if (tl_gguf_find(g, "tokenizer.ggml.add_space_prefix"))
		TL_TRY(tl_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix));
	return load_special_split(tok);
}

static tl_status
load_all(tl_tokenizer *tok, const tl_gguf *g)
{
	tl_gguf_str model,
				pre;
	const tl_gguf_kv *pre_kv;
	int			next;

	if (!tl_gguf_find(g, "tokenizer.ggml.model"))
		return tl_fail(TL_ERR_ARG, "tokenizer: tokenizer.ggml.model is missing");
	TL_TRY(tl_gguf_get_string(g, "tokenizer.ggml.model", &model));
	if (tl_gguf_str_eq(model, "llama"))
		return load_spm(tok, g);
	if (!tl_gguf_str_eq(model, "gpt2"))
		return tl_fail(TL_ERR_UNAVAILABLE,
					   "tokenizer: model \"%.*s\" is not supported (\"gpt2\" BPE, \"llama\" SentencePiece)",
					   (int) (model.len > 64 ? 64 : model.len), model.ptr);

	tok->pre = TL_TOK_PRE_GPT2;
	strcpy(tok->pre_name, "gpt2");
	pre_kv = tl_gguf_find(g, "tokenizer.ggml.pre");
	if (pre_kv)
	{
		bool		known = false;

		TL_TRY(tl_gguf_get_string(g, "tokenizer.ggml.pre", &pre));
		for (size_t i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
			if (tl_gguf_str_eq(pre, pre_names[i].name))
			{
				tok->pre = pre_names[i].pre;
				strcpy(tok->pre_name, pre_names[i].name);
				known = true;
				break;
			}
		if (!known && !tl_gguf_str_eq(pre, "default"))
			return tl_fail(TL_ERR_UNAVAILABLE, "tokenizer: pre-tokenizer \"%.*s\" is not supported",
						   (int) (pre.len > 64 ? 64 : pre.len), pre.ptr);
	}

	TL_TRY(load_tokens(tok, g));
	TL_TRY(load_types(tok, g));
	TL_TRY(load_merges(tok, g));
	TL_TRY(load_special_ids(tok, g, false));

	/* the byte alphabet: printable bytes are themselves, the rest 256.. */
	next = 256;
	memset(tok->cp_byte, 0xFF, sizeof(tok->cp_byte));
	for (int b = 0; b < 256; b++)
	{
		bool		printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
		int			cp = printable ? b : next++;
		char		u[2];
		int			n = utf8_put(u, (uint32_t) cp);

		tok->cp_byte[cp] = (int16_t) b;
		tok->byte_id[b] = tl_tokenizer_lookup(tok, u, (size_t) n);
	}

	return load_special_split(tok);
}

/* Special-split candidates (control, unknown, user-defined), longest first. */
static tl_status
load_special_split(tl_tokenizer *tok)
{
	special_sort *sorted;
	size_t		n_special = 0;

	for (int32_t id = 0; id < tok->n_vocab; id++)
		if (is_special_type(tok->types[id]) && tok_len(tok, id) > 0)
			n_special++;
	if (n_special == 0)
		return TL_OK;
	sorted = tl_alloc(n_special, sizeof(special_sort));
	tok->special = tl_alloc(n_special, sizeof(int32_t));
	if (!sorted || !tok->special)
	{
		tl_free(sorted);
		return tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory for %zu special tokens", n_special);
	}
	n_special = 0;
	for (int32_t id = 0; id < tok->n_vocab; id++)
		if (is_special_type(tok->types[id]) && tok_len(tok, id) > 0)
			sorted[n_special++] = (special_sort) {tok_len(tok, id), id};
	qsort(sorted, n_special, sizeof(special_sort), cmp_special);
	for (size_t i = 0; i < n_special; i++)
		tok->special[i] = sorted[i].id;
	tok->n_special = n_special;
	tl_free(sorted);
	return TL_OK;
}

tl_status
tl_tokenizer_load(tl_tokenizer **out, const tl_gguf *g)
{
	tl_tokenizer *tok;
	tl_status	rc;

	if (!out)
		return tl_fail(TL_ERR_ARG, "tokenizer: NULL output");
	*out = NULL;
	if (!g)
		return tl_fail(TL_ERR_ARG, "tokenizer: NULL GGUF");
	tok = tl_alloc(1, sizeof(*tok));
	if (!tok)
		return tl_fail(TL_ERR_NOMEM, "tokenizer: out of memory");
	rc = load_all(tok, g);
	if (rc != TL_OK)
	{
		tl_tokenizer_free(tok);
		return rc;
	}
	*out = tok;
	return TL_OK;
}

void
tl_tokenizer_free(tl_tokenizer *tok)
{
	if (!tok)
		return;
	tl_free(tok->arena);
	tl_free(tok->text_off);
	tl_free(tok->types);
	tl_free(tok->vocab_slots);
	tl_free(tok->merge_keys);
	tl_free(tok->merge_rank);
	tl_free(tok->merge_result);
	tl_free(tok->special);
	tl_free(tok->spm_rank);
	tl_free(tok);
}

/* ------------------------------------------------------------ accessors */

int32_t
tl_tokenizer_n_vocab(const tl_tokenizer *tok)
{
	return tok ? tok->n_vocab : 0;
}

tl_tok_pre
tl_tokenizer_pre(const tl_tokenizer *tok)
{
	return tok ? tok->pre : TL_TOK_PRE_GPT2;
}

const char *
tl_tokenizer_pre_name(const tl_tokenizer *tok)
{
	return tok ? tok->pre_name : "";
}

int32_t
tl_tokenizer_bos(const tl_tokenizer *tok)
{
	return tok ? tok->bos : -1;
}

int32_t
tl_tokenizer_eos(const tl_tokenizer *tok)
{
	return tok ? tok->eos : -1;
}

int32_t
tl_tokenizer_unk(const tl_tokenizer *tok)
{
	return tok ? tok->unk : -1;
}

int32_t
tl_tokenizer_pad(const tl_tokenizer *tok)
{
	return tok ? tok->pad : -1;
}

bool
tl_tokenizer_add_bos(const tl_tokenizer *tok)
{
	return tok ? tok->add_bos : false;
}

tl_status
tl_tokenizer_token_text(const tl_tokenizer *tok, int32_t id, const char **text, size_t *len)
{
	if (!tok || !text || !len)
		return tl_fail(TL_ERR_ARG, "tokenizer: NULL argument");
	if (id < 0 || id >= tok->n_vocab)
		return tl_fail(TL_ERR_ARG, "tokenizer: id %d is out of range [0, %d)", id, tok->n_vocab);
	*text = tok_text(tok, id);
	*len = tok_len(tok, id);
	return TL_OK;
}

tl_status
tl_tokenizer_token_type(const tl_tokenizer *tok, int32_t id, tl_token_type *type)
{
	if (!tok || !type)
		return tl_fail(TL_ERR_ARG, "tokenizer: NULL argument");
	if (id < 0 || id >= tok->n_vocab)
		return tl_fail(TL_ERR_ARG, "tokenizer: id %d is out of range [0, %d)", id, tok->n_vocab);
	*type = (tl_token_type) tok->types[id];
	return TL_OK;
}
