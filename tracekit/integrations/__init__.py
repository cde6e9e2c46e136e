"""Integrations with other tools, each an optional dependency imported only when used.

    from tracekit.integrations.mlflow import MLflowCallback   # pip install "tracekit[mlflow]"

Each is a `tk.Callback` (`tracekit.training.callbacks`) given to `Trainer(callbacks=[...])`.
"""
