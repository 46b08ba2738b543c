"""The control plane's Alembic environment (decision 074): env.py and versions/.

Run only through nodekeeper.server.migrate, which hands env.py an open connection; there
is no alembic.ini for an operator to find.
"""
