"""The JSON body parser's own rules, seen alone (the app-level cases are in
test_errors.py and test_security.py)."""

import pytest

from tenantapp.errors import InvalidJSON
from tenantapp.views.contract import has_duplicate_keys, parse_json_object


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": 1, "\\u0061": 2}',
        '{"x": [1, {"k": 1, "k": 2}]}',
        '{"o": {"p": {"q": 1, "q": 1}}}',
    ],
)
def test_repeated_keys_are_found_at_any_depth(text):
    assert has_duplicate_keys(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": {"a": 2}}',
        '[{"a": 1}, {"a": 2}]',
        '{"a": ["a", "a"]}',
        '{"a": "x,\\"a\\":", "b": 1}',
        '{"a{": 1, "a[": 2, "a,": 3}',
        "[" * 1000 + "]" * 1000,
    ],
)
def test_distinct_keys_pass(text):
    assert not has_duplicate_keys(text)


def test_parse_refuses_repeated_keys_and_non_objects():
    with pytest.raises(InvalidJSON):
        parse_json_object(b'{"name": "", "name": "x"}')
    with pytest.raises(InvalidJSON):
        parse_json_object(b"[1]")
    assert parse_json_object(b'{"name": "x"}') == {"name": "x"}
