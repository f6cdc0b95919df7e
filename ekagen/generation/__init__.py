"""Training the EKAGen generator: data, one GID round, validation decoding."""
