"""Applications: spydk tgt / nvmf_tgt / iscsi_tgt / bdevperf and the app framework."""
