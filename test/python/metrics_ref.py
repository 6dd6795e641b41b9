"""Reference metrics for test/metrics.test.ts, computed with scikit-learn / scipy.

Reads JSON on stdin: {"cases": [{"labels": [0/1...], "scores": [float...], "threshold": 0.5}]}
Writes JSON on stdout: one object per case. Undefined values are null.
EER reference: brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1) over roc_curve, as the
authors compute it (calculate_eer in github.com/yermandy/GenD src/metrics.py).
"""
import json
import sys
import warnings

import numpy as np
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             precision_recall_curve, roc_auc_score, roc_curve)


def clean(a):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


def one(case):
    y = np.asarray(case["labels"], dtype=int)
    s = np.asarray(case["scores"], dtype=float)
    thr = case.get("threshold", 0.5)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fpr, tpr, th = roc_curve(y, s, drop_intermediate=False)
        out["roc"] = {"fpr": clean(fpr), "tpr": clean(tpr), "thresholds": clean(th[1:])}
        p, r, pt = precision_recall_curve(y, s)
        out["pr"] = {"precision": clean(p), "recall": clean(r), "thresholds": clean(pt)}
        both = len(np.unique(y)) == 2
        out["auroc"] = float(roc_auc_score(y, s)) if both else None
        out["ap"] = float(average_precision_score(y, s)) if y.sum() > 0 else None
        if both:
            f = interp1d(fpr, tpr)
            out["eer"] = float(brentq(lambda x: 1.0 - x - f(x), 0.0, 1.0, xtol=1e-14))
        else:
            out["eer"] = None
        pred = (s >= thr).astype(int)
        out["accuracy"] = float(accuracy_score(y, pred))
        out["balancedAccuracy"] = float(balanced_accuracy_score(y, pred))
    return out


def main():
    data = json.load(sys.stdin)
    json.dump([one(c) for c in data["cases"]], sys.stdout)


if __name__ == "__main__":
    main()
