from closeloop_common.migrations import run_migrations
from closeloop_scoring.adapters.tables import metadata

run_migrations(metadata)
