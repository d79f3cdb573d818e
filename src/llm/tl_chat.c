/*
 * tl_chat.c -- chat templates (see tl_chat.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_chat.h"

const char *
tl_chat_style_name(tl_chat_style style)
{
	switch (style)
	{
		case TL_CHAT_CHATML:
			return "chatml";
		case TL_CHAT_LLAMA3:
			return "llama3";
		case TL_CHAT_ZEPHYR:
			return "zephyr";
	}
	return "unknown";
}

/* memmem over a GGUF string */
static const char *
tl_chat_find(tl_gguf_str s, const char *needle)
{
	size_t		n = strlen(needle);

	if (n == 0 || s.len < n)
		return NULL;
	for (size_t i = 0; i + n <= s.len; i++)
		if (memcmp(s.ptr + i, needle, n) == 0)
			return s.ptr + i;
	return NULL;
}

/*
 * A default system message inside a ChatML template: the literal text
 * between "<|im_start|>system\n" and "<|im_end|>" when it contains no
 * template syntax (a template that inserts the caller's message there
 * has "{{" or a quote in between instead).
 */
static void
tl_chat_default_system(tl_gguf_str src, char *out)
{
	static const char open[] = "<|im_start|>system\n";
	const char *at = tl_chat_find(src, open);

	out[0] = '\0';
	while (at)
	{
		const char *start = at + strlen(open);
		const char *end = src.ptr + src.len;
		tl_gguf_str rest = {start, (size_t) (end - start)};
		const char *close = tl_chat_find(rest, "<|im_end|>");
		size_t		len;
		bool		literal = true;

		if (!close)
			return;
		len = (size_t) (close - start);
		for (size_t i = 0; i < len; i++)
			if (start[i] == '{' || start[i] == '\'' || start[i] == '"' || start[i] == '}')
				literal = false;
		if (literal && len > 0 && len < TL_CHAT_MAX_SYSTEM)
		{
			memcpy(out, start, len);
			out[len] = '\0';
			return;
		}
		at = tl_chat_find(rest, open);
	}
}

tl_status
tl_chat_template_detect(const tl_gguf *g, tl_chat_template *t)
{
	tl_gguf_str src;

	memset(t, 0, sizeof(*t));
	if (tl_gguf_get_string(g, "tokenizer.chat_template", &src) != TL_OK)
	{
		t->style = TL_CHAT_CHATML;	/* llama.cpp's default too */
		return TL_OK;
	}
	if (tl_chat_find(src, "<|im_start|>"))
	{
		t->style = TL_CHAT_CHATML;
		tl_chat_default_system(src, t->default_system);
	}
	else if (tl_chat_find(src, "<|start_header_id|>"))
		t->style = TL_CHAT_LLAMA3;
	else if (tl_chat_find(src, "<|user|>"))
		t->style = TL_CHAT_ZEPHYR;
	else
		return tl_fail(TL_ERR_UNAVAILABLE,
					   "chat template not recognised (looked for ChatML <|im_start|>, Llama 3 "
					   "<|start_header_id|> and Zephyr <|user|>); build the prompt yourself and use generate");
	return TL_OK;
}

/* A growing list of token ids. */
typedef struct tl_id_list
{
	int32_t    *ids;
	size_t		n,
				cap;
} tl_id_list;

/* Tokenize a piece and append it. */
static tl_status
tl_chat_append(tl_id_list *l, const tl_tokenizer *tok, const char *text, size_t len, unsigned flags)
{
	int32_t    *piece;
	size_t		n;

	if (len == 0 && !(flags & TL_TOK_ADD_BOS))
		return TL_OK;
	TL_TRY(tl_tokenizer_encode(tok, text, len, flags, &piece, &n));
	if (l->n + n > l->cap)
	{
		size_t		cap = (l->cap ? l->cap * 2 : 64) + n;
		int32_t    *grown = tl_alloc(cap, sizeof(int32_t));

		if (!grown)
		{
			tl_free(piece);
			return tl_fail(TL_ERR_NOMEM, "chat: no memory for the prompt");
		}
		if (l->n)
			memcpy(grown, l->ids, l->n * sizeof(int32_t));
		tl_free(l->ids);
		l->ids = grown;
		l->cap = cap;
	}
	if (n)
		memcpy(l->ids + l->n, piece, n * sizeof(int32_t));
	l->n += n;
	tl_free(piece);
	return TL_OK;
}

#define TL_MARKUP(l, tok, s, flags) tl_chat_append((l), (tok), (s), strlen(s), TL_TOK_PARSE_SPECIAL | (flags))

/* One turn: opening markup, content as plain text, closing markup. */
static tl_status
tl_chat_turn(const tl_chat_template *t, const tl_tokenizer *tok, tl_id_list *l,
			 const char *role, const char *content, size_t len, unsigned first_flags)
{
	char		open[96];
	const char *close;

	switch (t->style)
	{
		case TL_CHAT_CHATML:
			snprintf(open, sizeof(open), "<|im_start|>%s\n", role);
			close = "<|im_end|>\n";
			break;
		case TL_CHAT_LLAMA3:
			snprintf(open, sizeof(open), "<|start_header_id|>%s<|end_header_id|>\n\n", role);
			close = "<|eot_id|>";
			break;
		case TL_CHAT_ZEPHYR:
		default:
			snprintf(open, sizeof(open), "<|%s|>\n", role);
			close = "</s>\n";
			break;
	}
	TL_TRY(TL_MARKUP(l, tok, open, first_flags));
	TL_TRY(tl_chat_append(l, tok, content, len, 0));
	if (content == NULL)
		return TL_OK;			/* the assistant's turn, left open */
	return TL_MARKUP(l, tok, close, 0);
}

tl_status
tl_chat_tokenize(const tl_chat_template *t, const tl_tokenizer *tok,
				 const tl_chat_message *msgs, int n_msgs, int32_t **ids, size_t *n_ids)
{
	tl_id_list	l = {0};
	unsigned	first = TL_TOK_ADD_BOS;
	tl_status	rc = TL_OK;

	*ids = NULL;
	*n_ids = 0;
	if (!msgs || n_msgs < 1)
		return tl_fail(TL_ERR_ARG, "chat: no messages");
	for (int i = 0; i < n_msgs; i++)
	{
		const char *r = msgs[i].role;

		if (!r || (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0))
			return tl_fail(TL_ERR_ARG, "chat: message %d has role \"%s\"; roles are system, user and assistant",
						   i + 1, r ? r : "(none)");
		if (!msgs[i].content && msgs[i].content_len > 0)
			return tl_fail(TL_ERR_ARG, "chat: message %d has no content", i + 1);
		if (i > 0 && strcmp(r, "system") == 0)
			return tl_fail(TL_ERR_ARG, "chat: a system message must come first (message %d)", i + 1);
	}

	if (strcmp(msgs[0].role, "system") != 0 && t->default_system[0])
	{
		rc = tl_chat_turn(t, tok, &l, "system", t->default_system, strlen(t->default_system), first);
		first = 0;
	}
	for (int i = 0; rc == TL_OK && i < n_msgs; i++)
	{
		rc = tl_chat_turn(t, tok, &l, msgs[i].role, msgs[i].content ? msgs[i].content : "",
						  msgs[i].content_len, first);
		first = 0;
	}
	if (rc == TL_OK)
		rc = tl_chat_turn(t, tok, &l, "assistant", NULL, 0, 0);
	if (rc != TL_OK)
	{
		tl_free(l.ids);
		return rc;
	}
	*ids = l.ids;
	*n_ids = l.n;
	return TL_OK;
}
