"""impl='auto' in a multi-process job: every rank runs the same choice, whatever its own clock says.

Two gloo processes, each with a fake clock under which another backend is fastest, resolve buckets
in different orders (and one bucket on one rank only, as images of other sizes per rank would):
both must end with the same backend per bucket, each bucket measured by one rank, and no hang,
also when the rank deciding a bucket fails.
"""
import json
import multiprocessing

import torch
import torch.distributed as dist

from mmreplk.ops import DepthwiseDispatcher

CPU = torch.device('cpu')


def _rank(store: str, rank: int, out: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    now = [0.0]
    fastest_first = [('nchw', 'channels_last', 'cpu'), ('cpu', 'channels_last', 'nchw')][rank]
    delays = {name: float(i + 1) for i, name in enumerate(fastest_first)}

    def run_args(name):
        def run():
            now[0] += delays[name]
        return run

    def broken(name):
        def run():
            raise RuntimeError(f'{name} is broken')
        return run

    dispatcher = DepthwiseDispatcher(['nchw', 'channels_last', 'cpu'], clock=lambda: now[0])
    for kernel_size in [3, 5, 7, 9] if rank == 0 else [9, 7, 5, 11]:
        for pass_name in ('forward', 'input_grad'):
            dispatcher.resolve(pass_name, 'auto', CPU, torch.float32, kernel_size,
                               (2, 8, 16, 16), run_args)
    dist.barrier()
    try:  # the rank deciding fails: the other must fail too, not wait for ever
        dispatcher.resolve('forward', 'auto', CPU, torch.float32, 13, (2, 8, 16, 16), broken)
        failure = None
    except RuntimeError as error:
        failure = str(error)
    with open(out, 'w') as file:
        json.dump({'measurements': dispatcher.measurements, 'failure': failure,
                   'choices': {str(b): [c.impl, c.source] for b, c in dispatcher.choices.items()}},
                  file)
    dist.destroy_process_group()


def test_every_rank_runs_the_same_choice(tmp_path):
    outs = [tmp_path / f'rank{rank}.json' for rank in range(2)]
    # fork: the ranks need nothing but this module, already imported, and run no torch kernels.
    context = multiprocessing.get_context('fork')
    ranks = [context.Process(target=_rank, args=(str(tmp_path / 'store'), rank, str(out)))
             for rank, out in enumerate(outs)]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join(timeout=120)
    assert [rank.exitcode for rank in ranks] == [0, 0]
    first, second = (json.loads(out.read_text()) for out in outs)
    shared = set(first['choices']) & set(second['choices'])
    assert len(shared) == 6  # K = 5, 7, 9, two passes each
    for bucket in shared:
        assert first['choices'][bucket][0] == second['choices'][bucket][0], bucket
        assert {first['choices'][bucket][1], second['choices'][bucket][1]} in (
            {'measured', 'from rank 1'}, {'measured', 'from rank 0'})
    # Buckets met by one rank only are measured there, without waiting for the other.
    assert first['measurements'] + second['measurements'] == 10
    # Each rank's own clock decided what it measured.
    for choices, fastest in ((first['choices'], 'nchw'), (second['choices'], 'cpu')):
        assert {impl for impl, source in choices.values() if source == 'measured'} == {fastest}
    failures = sorted(result['failure'] for result in (first, second))
    assert failures[0].startswith('every depth-wise conv backend failed')
    assert failures[1].startswith('the rank that chose the depth-wise conv path')
