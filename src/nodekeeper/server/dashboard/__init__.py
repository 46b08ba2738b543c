"""The operator's dashboard in the browser (decision 080): server-rendered pages under
``/dashboard``, a session from the admin token, actions through the admin API's handlers."""

from .routes import router

__all__ = ["router"]
