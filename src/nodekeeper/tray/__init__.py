"""The operator's window (issue 13): the tray app that reads the keeper's status API and
error index, shows problems, notifies, and runs the first-run wizard. Built in pieces;
the pure ones first: what is unread (``unread``) and where "last seen" lives
(``last_seen``)."""
