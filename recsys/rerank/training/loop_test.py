import numpy as np
import torch

from recsys.rerank.training.loop import StageConfig, fit_stage

X = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def _loss(model: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
    index = torch.as_tensor(rows)
    noise = 0.01 * torch.randn(len(rows))  # draws from the global RNG, which the loop reseeds per epoch
    return torch.nn.functional.mse_loss(model(X[index]).squeeze(-1), Y[index] + noise)


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Linear(3, 1)


CONFIG = StageConfig(epochs=4, batch_size=8, lr=0.05, progress=False)


def test_the_loss_goes_down():
    losses = fit_stage("toy", _model(), _loss, len(X), CONFIG)
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]


def test_resume_after_an_interruption_gives_the_uninterrupted_weights(tmp_path):
    straight = _model()
    fit_stage("toy", straight, _loss, len(X), CONFIG)
    resumed = _model()
    first = fit_stage("toy", resumed, _loss, len(X), CONFIG, checkpoint_dir=tmp_path, stop_after_epochs=2)
    again = _model()  # a new process: fresh weights, everything else comes from the checkpoint
    rest = fit_stage("toy", again, _loss, len(X), CONFIG, checkpoint_dir=tmp_path)
    assert len(first) == 2 and len(rest) == 2
    for a, b in zip(straight.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_resume_restores_the_generators_the_loss_draws_from(tmp_path):
    def run(model, generator, **kwargs):
        def loss(m, rows):
            index = torch.as_tensor(rows)
            noise = 0.1 * torch.randn(len(rows), generator=generator)
            return torch.nn.functional.mse_loss(m(X[index]).squeeze(-1), Y[index] + noise)

        return fit_stage("toy", model, loss, len(X), CONFIG, generators=(generator,), **kwargs)

    straight = _model()
    run(straight, torch.Generator().manual_seed(5))
    run(_model(), torch.Generator().manual_seed(5), checkpoint_dir=tmp_path, stop_after_epochs=3)
    again = _model()
    run(again, torch.Generator().manual_seed(5), checkpoint_dir=tmp_path)  # a new process, a fresh generator
    for a, b in zip(straight.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b)
