"""forgetkit: machine unlearning that decides how much to forget."""
