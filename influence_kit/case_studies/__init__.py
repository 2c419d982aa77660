"""Case studies: the influence of labeling functions and of crowdworkers.

==========================  ====================================================
module                      contents
==========================  ====================================================
:mod:`~.labeling_functions` YouTube spam labelled by ten labeling functions
                            (notebook 05)
:mod:`~.crowd`              RTE sentence pairs labelled by Mechanical Turk
                            workers (notebook 06)
:mod:`~.text_features`      TF-IDF features of comments, features of pairs
:mod:`~.evaluation`         test log-loss and a smooth accuracy as engine
                            quantities, and the results table
:mod:`~.figures`            the case studies' own figures
:mod:`~.widgets`            the two notebooks' explorers
:mod:`~.exercises`          checkers of the exercise answers
:mod:`~.settings`           fast mode
==========================  ====================================================
"""

from .crowd import CrowdStudy, build_crowd_study
from .labeling_functions import SpamStudy, build_spam_study
from .widgets import LabelingFunctionExplorer, WorkerExplorer

__all__ = [
    "CrowdStudy",
    "LabelingFunctionExplorer",
    "SpamStudy",
    "WorkerExplorer",
    "build_crowd_study",
    "build_spam_study",
]
