"""Pictures: traced graphs (`graph_picture`: tk.render) and training runs (`run_plot`: tk.plot_run).

Both modules import matplotlib and networkx only when a picture is drawn.
"""
