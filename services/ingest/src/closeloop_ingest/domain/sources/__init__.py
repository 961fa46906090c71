"""Survey-tool sources: one module per kind, each an adapter following `base.SourceAdapter`."""
