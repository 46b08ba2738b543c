"""The version this copy of the node reports.

The release builder (:mod:`storagenode.release`) rewrites this file inside the artifact,
so a built node knows its version without reading anything at run time. A source
checkout reports a pre-release that sorts below every real release.
"""

VERSION = "0.0.0-dev"
