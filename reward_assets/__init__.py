import os

# XGBoost's OpenMP threads spin between parallel regions by default (libgomp's ACTIVE
# wait policy), which on a shared machine steals the cores the other threads are waiting
# for: a 100-round churn-sized fit took 84-109 s with the default and 4-7 s with PASSIVE
# on the 2-core benchmark machine under load. libgomp reads the policy once, when
# XGBoost loads it, so it is set here, before any module of the package imports XGBoost;
# an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
