# Put tests/ on sys.path so test modules can `from softauthn import ...`
# whatever pytest's import mode or the directory pytest is started from.
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

# A throwaway PostgreSQL cluster and the postgres_server / postgres_url /
# database_url fixtures; `pytest --no-postgres` skips what needs it (not in CI).
pytest_plugins = ["postgres"]
