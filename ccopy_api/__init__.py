"""Python code generated from the `.proto` sources in `proto/`.

Nothing here is written by hand except this file and `generate.py`: run
`python -m ccopy_api.generate` after editing a `.proto` file. A test fails when
the committed modules are stale.
"""
