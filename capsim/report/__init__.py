"""Tables, plots and HTML reports of simulation and load-test results."""
