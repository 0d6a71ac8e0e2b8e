from recsys.mmbee import defaults
from recsys.mmbee.pipeline import train_recipe


def test_the_training_recipe_is_the_defaults_with_changes_on_top():
    recipe = train_recipe()
    assert recipe.epochs == defaults.DEFAULT_EPOCHS
    assert recipe.task_weights == defaults.TASK_WEIGHTS
    assert (recipe.lr_schedule, recipe.warmup_ratio) == (defaults.LR_SCHEDULE, defaults.WARMUP_RATIO)
    assert (recipe.ema_decay, recipe.eval_every) == (defaults.EMA_DECAY, defaults.EVAL_EVERY)
    changed = train_recipe(epochs=defaults.DEFAULT_EPOCHS + 5, seed=3, progress=False)
    assert (changed.epochs, changed.seed, changed.progress) == (defaults.DEFAULT_EPOCHS + 5, 3, False)
    assert changed.ema_decay == recipe.ema_decay and changed.lr_schedule == recipe.lr_schedule
