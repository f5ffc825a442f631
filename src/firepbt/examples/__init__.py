"""Small benchmark trainables: the PBT paper's toy and the noisy quadratic model (NQM)."""
