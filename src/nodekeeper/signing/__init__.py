"""Signed releases with TUF (decision 083): what the control plane and the keeper agree on.

``layout`` names the metadata's place on the control plane and each release artifact's
TUF target path; the repository side (the control plane) and the verifying side (the
keeper) both import it, so the two can never disagree on a name.
"""
