import pytest

from nodekeeper.server.document import etag_matches

ETAG = b'"abc"'


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b'"abc"', True),
        (b'W/"abc"', True),
        (b'"x", "abc"', True),
        (b' "x" ,W/"abc" ', True),
        (b"*", True),
        (b'"abcd"', False),
        (b"abc", False),
        (b"", False),
        (b'"x"', False),
    ],
)
def test_if_none_match(header, match):
    assert etag_matches(header, ETAG) is match
