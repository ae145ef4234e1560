"""Mixture of European Experts: merge experts that share a base, assemble a language-routed
mixture of experts, analyse its routing, and measure transfer between languages.

- `tensors`: safetensors folders read and written one tensor at a time; expert compatibility checks.
- `merge`: linear average, task arithmetic and TIES (checked against mergekit to 1e-6).
- `moe`: a Mixtral-format checkpoint from N dense Llama experts (each expert's MLP one expert).
- `router`: router rows from per-language hidden-state centroids, routing shares, brief training.
- `transfer`: the transfer matrix, its clustering and the suggested expert groups.
- `stage`, `moe_stage`, `transfer_stage`: the `merge`, `moe` and `transfer` stages.
"""
