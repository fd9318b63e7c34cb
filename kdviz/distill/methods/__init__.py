"""The distillation methods, one module per family; importing this package registers them all.

One rule places the code: a family's `Method` classes (and its procedures, e.g. the synthetic-set
distillation of `dataset` or the differentiable Grad-CAM of `explain`) live in
`kdviz.distill.methods.<family>`; its pure losses — functions of tensors only, no modules, no
state — in the twin module `kdviz.distill.losses.<family>`. The method contract and the registry
(`Method`, `Hyperparameter`, `Batch`, `TrainContext`, `register_method`) are `kdviz.distill.registry`;
helpers several families share (feature shapes, teacher features, tapped forward) are `_common`.

    response        baselines, Hinton KD, born-again, DKD, teacher-free KD, selective / sampled KD, controls
    feature         attention transfer, relational KD, FitNets, feature mimicking
    compress        encoder compression (the teacher's features into the student's bottleneck)
    dataset         dataset distillation by distribution matching
    explain         explanation-guided KD (Grad-CAM / input-gradient matching, self-explanation)
    multi_exit      multi-exit and multi-branch self-distillation (BYOT, ONE-style branches, ambiguity)
    multi_teacher   several teachers, privileged teachers, online peers
    self            self-distillation without a separate teacher (PS-KD, SD-Dropout, ...)
"""

# The import order is the registration order, which orders `list_methods()` within a family.
# isort: off
from kdviz.distill.methods import response  # noqa: F401  (registers the methods of each family)
from kdviz.distill.methods import feature  # noqa: F401
from kdviz.distill.methods import compress  # noqa: F401
from kdviz.distill.methods import dataset  # noqa: F401
from kdviz.distill.methods import explain  # noqa: F401
from kdviz.distill.methods import multi_exit  # noqa: F401
from kdviz.distill.methods import multi_teacher  # noqa: F401
from kdviz.distill.methods import self  # noqa: F401
# isort: on
