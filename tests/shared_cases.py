"""Inputs from the shared fault cases that several test modules use."""

# BUG-04: a chat template that insists on alternating user and assistant turns.
STRICT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# BUG-04: one good row, two user turns in a row, and an assistant speaking first.
BUG04_ROWS = [
    {"messages": [{"role": "user", "content": "Capital of Peru?"},
                  {"role": "assistant", "content": "Lima."}]},
    {"messages": [{"role": "user", "content": "First part."},
                  {"role": "user", "content": "Second part."},
                  {"role": "assistant", "content": "Got both."}]},
    {"messages": [{"role": "assistant", "content": "I speak first."},
                  {"role": "user", "content": "Ok."}]},
]
