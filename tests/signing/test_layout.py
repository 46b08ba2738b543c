"""The names the control plane signs and the keeper looks up (decision 083)."""

from nodekeeper.signing.layout import metadata_url, target_custom, target_path


def test_a_target_is_named_by_what_it_is_not_by_where_it_is_served():
    path = target_path("storagenode", "v1.2.3", "windows_amd64")
    assert path == "storagenode/1.2.3/windows_amd64.zip"
    assert target_custom("storagenode", "v1.2.3", "windows_amd64") == {
        "process": "storagenode",
        "version": "1.2.3",
        "platform": "windows_amd64",
    }


def test_the_metadata_sits_under_the_control_planes_url():
    assert metadata_url("https://cp.example:7780") == "https://cp.example:7780/tuf/metadata/"
    assert metadata_url("https://cp.example:7780/") == "https://cp.example:7780/tuf/metadata/"
