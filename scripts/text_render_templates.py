#!/usr/bin/env python3
"""Render chat templates with Python's jinja2 the way transformers' apply_chat_template does, as fixtures for
burrow-text's ChatTemplate (minijinja) to match byte for byte.

The templates are written here in the style of four model families (Qwen2.5, Llama 3, Gemma, Phi-3) and
exercise what those families use: system-message handling, `bos_token`, `| trim`, `raise_exception`, Python
string methods, `namespace`, `tojson`, loop variables, and whitespace control under trim_blocks/lstrip_blocks.

Output: tests/text-fixtures/chat_templates.json
Requires: pip install jinja2
"""

import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "text-fixtures", "chat_templates.json")

QWEN_STYLE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- '\\n\\n# Tools\\n<tools>' }}
    {%- for tool in tools %}
        {{- '\\n' }}{{- tool | tojson }}
    {%- endfor %}
    {{- '\\n</tools><|im_end|>\\n' }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3_STYLE = """\
{% set loop_messages = messages %}
{% for message in loop_messages %}
{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}
{% if loop.index0 == 0 %}
{% set content = bos_token + content %}
{% endif %}
{{ content }}
{% endfor %}
{% if add_generation_prompt %}
{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{% endif %}
"""

GEMMA_STYLE = """\
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if message['role'] not in ['user', 'assistant'] -%}
        {{ raise_exception("Unknown role: " ~ message['role']) }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

PHI3_STYLE = """\
{% for message in messages %}
    {% if message['role'] == 'system' %}
        {{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}
    {% elif message['role'] == 'user' %}
        {{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}
    {% elif message['role'] == 'assistant' %}
        {{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}
"""

# Python string methods, namespace, tojson of the messages and loop.last, as mixed templates do.
MISC_STYLE = """\
{%- set ns = namespace(system='', turns=0) -%}
{%- for m in messages -%}
  {%- if m.role == 'system' -%}{% set ns.system = m.content.strip() %}{% continue %}{%- endif -%}
  {%- set ns.turns = ns.turns + 1 %}
[{{ m.role.upper() }}{{ '*' if m.content.startswith('Hi') else '' }}] {{ m.content.replace('  ', ' ').rstrip() }}
  {%- if loop.last %} (last of {{ messages | length }}){% endif %}
{%- endfor %}
system={{ ns.system | tojson }} turns={{ ns.turns }} tools={{ tools | tojson }}
{{ messages | tojson }}
{% if add_generation_prompt %}>>> {% endif %}
"""

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
MULTI = [
    {"role": "user", "content": "Hi there!  "},
    {"role": "assistant", "content": "  Hello. How can I help?"},
    {"role": "user", "content": "What is 2 + 2? Use \"quotes\" and <tags> & café."},
]

TEMPLATES = [
    ("qwen2.5_style", QWEN_STYLE, "", "<|im_end|>"),
    ("llama3_style", LLAMA3_STYLE, "<|begin_of_text|>", "<|eot_id|>"),
    ("gemma_style", GEMMA_STYLE, "<bos>", "<eos>"),
    ("phi3_style", PHI3_STYLE, "<s>", "<|endoftext|>"),
    ("misc_python_methods", MISC_STYLE, "<s>", "</s>"),
]

CONVERSATIONS = [
    ("single_user", [{"role": "user", "content": "What is the capital of France?"}]),
    ("system_and_user", [SYSTEM, {"role": "user", "content": "Name a prime number."}]),
    ("multi_turn", MULTI),
    ("system_multi_turn", [SYSTEM] + MULTI),
    ("bad_role", [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]),
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' own tojson filter.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def main():
    env = make_env()
    fixtures = []
    for name, source, bos, eos in TEMPLATES:
        template = env.from_string(source)
        cases = []
        for conv_name, messages in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                case = {"name": conv_name, "messages": messages, "add_generation_prompt": add_generation_prompt}
                try:
                    case["expected"] = template.render(
                        messages=messages,
                        tools=None,
                        documents=None,
                        add_generation_prompt=add_generation_prompt,
                        bos_token=bos,
                        eos_token=eos,
                    )
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
        fixtures.append({"name": name, "template": source, "bos_token": bos, "eos_token": eos, "cases": cases})
    out = {"source": f"jinja2 {jinja2.__version__} (scripts/text_render_templates.py), rendered as transformers' "
           "apply_chat_template does", "templates": fixtures}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
