#!/usr/bin/env python3
"""Renders a tokenizer_config.json chat_template the way transformers' apply_chat_template does.

    render_chat_template.py TOKENIZER_CONFIG.json CONVERSATIONS.json > OUT.json

CONVERSATIONS.json is a list of {"messages": [...], "tools": [...] or absent,
"add_generation_prompt": bool}. OUT.json is a list with, per conversation, either
{"text": rendered, "generation": [[begin, end], ...]} (the {% generation %} spans as UTF-8 byte
offsets into text) or {"error": message} when the template raised.

The environment is transformers' (src/transformers/utils/chat_template_utils.py,
_compile_jinja_template and render_jinja_template): Debian's python3-jinja2, an
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension and
an AssistantTracker extension for {% generation %} written after transformers' own, `tojson` as
json.dumps (ensure_ascii=False), the globals raise_exception and strftime_now, and the variables
messages, tools, documents, add_generation_prompt and the special tokens of the config.
"""
import json
import sys
from contextlib import contextmanager
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    """transformers' {% generation %} ... {% endgeneration %}: records the spans it renders."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        environment.extend(activate_tracker=self.activate_tracker)
        self._rendered_blocks = None
        self._generation_indices = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        rv = caller()
        if self._rendered_blocks is not None:
            start = len("".join(self._rendered_blocks))
            self._generation_indices.append((start, start + len(rv)))
        return rv

    @contextmanager
    def activate_tracker(self, rendered_blocks, generation_indices):
        self._rendered_blocks = rendered_blocks
        self._generation_indices = generation_indices
        try:
            yield
        finally:
            self._rendered_blocks = None
            self._generation_indices = None


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def compile_template(source):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def special_tokens(config):
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key)
        if isinstance(value, dict):  # an AddedToken in its saved form
            value = value.get("content")
        if value is not None:
            out[key] = value
    if "additional_special_tokens" in config:
        out["additional_special_tokens"] = config["additional_special_tokens"]
    return out


def byte_offset(text, char_index):
    return len(text[:char_index].encode("utf-8"))


def render(template, config, conversation):
    blocks, spans = [], []
    try:
        with template.environment.activate_tracker(blocks, spans):
            for block in template.generate(messages=conversation["messages"],
                                           tools=conversation.get("tools"),
                                           documents=None,
                                           add_generation_prompt=conversation.get(
                                               "add_generation_prompt", False),
                                           **special_tokens(config)):
                blocks.append(block)
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}
    text = "".join(blocks)
    return {"text": text,
            "generation": [[byte_offset(text, b), byte_offset(text, e)] for b, e in spans]}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    with open(sys.argv[2], encoding="utf-8") as f:
        conversations = json.load(f)
    template = compile_template(config["chat_template"])
    out = [render(template, config, c) for c in conversations]
    sys.stdout.write(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
