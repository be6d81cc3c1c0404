"""SCWM: Spatial Cascaded Clustering and Weighted Memory for unsupervised person re-ID.

Subpackages
-----------
- :mod:`scwm.data`        synthetic pedestrian world, dataset readers, transforms, sampler
- :mod:`scwm.evaluation`  re-ID ranking metrics (CMC, mAP, mINP), chunked evaluation, re-ranking
- :mod:`scwm.clustering`  k-reciprocal Jaccard distance, DBSCAN pseudo labels, kNN cross agreement
- :mod:`scwm.parsing`     spatial cascaded clustering (pseudo part masks), smoothing, parsing metrics
- :mod:`scwm.models`      ResNet backbone with last stride 1, part head, BN necks
- :mod:`scwm.memory`      weighted centroid memory
- :mod:`scwm.losses`      wNCE, part separation, parsing, diversity, part-based classification
"""

__version__ = "0.1.0"
