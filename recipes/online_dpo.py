"""Online DPO (`make train-online-dpo`): DPO trained in rounds on the current policy's own answers, best against
worst as the built-in verifier or a reward model scores them (prefopt/online_dpo.py has the rounds).

Copy it to start your own: `make new-recipe from=online-dpo name=my_online_dpo`, then edit RECIPE or the loop.
"""

import dataclasses

from prefopt.online_dpo import check_online, train_in_rounds
from recipes import dpo

RECIPE = dataclasses.replace(
    dpo.RECIPE,  # each round's trainer is DPO's, with its config and metrics
    own_keys=(*dpo.RECIPE.own_keys, "online", "reward"),
    loop=train_in_rounds,  # rounds of sample, score, pair, train, instead of one pass over the dataset
    config_problems=check_online,  # one process, ref=base, no precomputed reference: checked before anything loads
)
