"""Your own teacher and student: inspect, distil and open in the app any PyTorch classifier pair.

`Pair` compares two (or three) modules of yours on your data; `distill_student` trains a copy of
your student with a registered method; `show` opens the app on a pair; `save_pair` keeps a pair
in the run store (architecture as an allowed factory or a `torch.export` program, weights as
safetensors; never pickle).
"""

from kdviz.external.distilling import DistillResult, distill_student, supported_methods
from kdviz.external.launch import show, stop
from kdviz.external.pair import Pair
from kdviz.external.saving import save_pair

__all__ = ["DistillResult", "Pair", "distill_student", "save_pair", "show", "stop", "supported_methods"]
