"""Distillation losses as pure functions of tensors (logits, labels, features): no modules, no state.

The twin of `kdviz.distill.methods`: the pure losses of family `<family>` live in
`kdviz.distill.losses.<family>`, beside nothing else; the `Method` classes that call them live in
`kdviz.distill.methods.<family>`. `response` also holds the building blocks every family uses
(`cross_entropy`, `soft_targets`, `kd_kl`, `hinton_kd`, `check_alpha`, `check_temperature`).
Families without pure losses of their own (`compress`) have no module here.
"""
