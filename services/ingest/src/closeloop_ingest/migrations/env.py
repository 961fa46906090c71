from closeloop_common.migrations import run_migrations
from closeloop_ingest.adapters.tables import metadata

run_migrations(metadata)
