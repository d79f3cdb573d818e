/*
 * tl_chat.h -- turning a conversation into the prompt a chat model was
 * trained on.
 *
 * GGUF files carry their chat template as Jinja source
 * (tokenizer.chat_template).  Rather than interpret Jinja, the runtime
 * recognises the template families it supports by their markers and
 * renders them in C:
 *
 *	 ChatML ("<|im_start|>": SmolLM2, Qwen2; also the default when a file
 *	 has no template, as in llama.cpp)
 *		 <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 *	 Llama 3 ("<|start_header_id|>")
 *		 <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>
 *		 ... <|start_header_id|>assistant<|end_header_id|>\n\n
 *	 Zephyr ("<|user|>": TinyLlama chat)
 *		 <|{role}|>\n{content}</s>\n ... <|assistant|>\n
 *
 * A default system message written into a ChatML template (SmolLM2's
 * "You are a helpful AI assistant named SmolLM...", Qwen2's "You are a
 * helpful assistant.") is found in the template's text and used when the
 * conversation does not start with a system message, as the template
 * would.
 *
 * Markup and content are tokenized apart: markup with special tokens
 * parsed, content as plain text, so a message that contains
 * "<|im_end|>" cannot end its turn early or forge another role.
 */
#ifndef TL_CHAT_H
#define TL_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "tl_gguf.h"
#include "tl_status.h"
#include "tl_tokenizer.h"

#define TL_CHAT_MAX_SYSTEM 1024

typedef enum tl_chat_style
{
	TL_CHAT_CHATML = 0,
	TL_CHAT_LLAMA3,
	TL_CHAT_ZEPHYR
} tl_chat_style;

typedef struct tl_chat_template
{
	tl_chat_style style;
	char		default_system[TL_CHAT_MAX_SYSTEM];	/* "" for none */
} tl_chat_template;

typedef struct tl_chat_message
{
	const char *role;			/* "system", "user" or "assistant" */
	const char *content;		/* content_len bytes */
	size_t		content_len;
} tl_chat_message;

/*
 * The template family of a model.  TL_ERR_UNAVAILABLE for a template of
 * another family (the message names the markers looked for).
 */
tl_status	tl_chat_template_detect(const tl_gguf *g, tl_chat_template *t);

/* "chatml", "llama3", "zephyr" */
const char *tl_chat_style_name(tl_chat_style style);

/*
 * Tokens of the conversation followed by the assistant's turn opening.
 * TL_ERR_ARG for no messages, an unknown role, or a system message that
 * is not first.  *ids is tl_alloc'd.
 */
tl_status	tl_chat_tokenize(const tl_chat_template *t, const tl_tokenizer *tok,
							 const tl_chat_message *msgs, int n_msgs,
							 int32_t **ids, size_t *n_ids);

#endif							/* TL_CHAT_H */
