"""tqk's test suite. A package, so its folders (kernels, layouts, quant, gpu) import as tests.kernels and so on: as
top-level names they shadowed installed packages (transformers 5.25 imports the hub's `kernels`)."""
