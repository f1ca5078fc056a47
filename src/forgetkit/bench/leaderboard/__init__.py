"""The leaderboard (``forgetkit report --leaderboard``): every method, at its reference defaults and
tuned, ranked per request shape and data/model setting by Avg. Gap to Retrain.

The page opens with the answer (the best method per request shape, its 95 % interval and the
methods within seed noise of it). Per shape: Avg. Gap with a 95 % Student-t interval over seeds,
each row's rank, a paired t-test against the best row on the seeds both share, FA/RA/TA/MIA, the
class-request attacks (MIA-NN gap, U-LiRA) where they were measured, run time and speed-up over
Retrain, the recipe and commit of each row. Across shapes: mean ranks at reference defaults and
under equal tuning, and a gap-vs-time Pareto plot. The closing section is the reading given with
``--reading``, included verbatim (so regenerating never erases it), or else a factual summary
computed from the numbers. Rows run from uncommitted code are shown, marked, and never ranked.

One module per job: :mod:`.statistics`, :mod:`.loading`, :mod:`.ranking`, :mod:`.tables`,
:mod:`.plots`, :mod:`.reading` (with the claims it checks in ``claims.yaml``) and :mod:`.page`.
"""
from .loading import Entry, Setting, Shape, load_setting, shown_name, split_by_tuning
from .page import render, write_leaderboard
from .plots import Panel, pareto_panels, plot_panels
from .ranking import Ranked, answer, league, league_ranks, rank_shape
from .reading import READING_TITLE, automatic_reading, beats_all, head_to_head, load_claims, ours_lines
from .statistics import LEVEL, average_ranks, mean_ranks, paired_p, pareto_front, t_interval
from .tables import fmt_p, mean_rank_table, rank_matrix, shape_table

__all__ = ["LEVEL", "READING_TITLE", "Entry", "Panel", "Ranked", "Setting", "Shape", "answer", "automatic_reading",
           "average_ranks", "beats_all", "head_to_head", "league", "league_ranks", "load_claims", "load_setting",
           "mean_rank_table", "mean_ranks", "ours_lines", "paired_p", "pareto_front", "pareto_panels", "plot_panels",
           "rank_matrix", "rank_shape", "render", "shape_table", "shown_name", "split_by_tuning",
           "t_interval", "write_leaderboard"]
