from gpuq.cli import main

main(prog_name="gpuq")
