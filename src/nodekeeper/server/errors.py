"""Errors the control plane answers with: each carries its HTTP status and a message
that says what was wrong and how to fix it."""

from __future__ import annotations


class ControlPlaneError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ControlPlaneError):
    status_code = 404


class ConflictError(ControlPlaneError):
    status_code = 409


class InvalidRequestError(ControlPlaneError):
    status_code = 422
