"""The files a run writes beside its data, as typed models: the manifest, the completion
markers, the quality files, `_SUCCESS`, and the status read from them all. Each carries a
format version; every model reads the files of earlier versions (no version = 0)."""
