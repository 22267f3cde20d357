"""How `bench lab up` shares the host's cores among virtual devices, and the device's numbering."""
from device_agents.virtual.cpus import CpuSlice, plan_cpu_slices, shared_cores


def test_more_cores_than_devices_keeps_the_first_core_for_the_host_side():
    assert plan_cpu_slices(1, [0, 1]) == [[1]]
    assert plan_cpu_slices(2, list(range(8))) == [[1, 2, 3], [4, 5, 6]]  # core 7 left idle
    assert plan_cpu_slices(3, list(range(8))) == [[1, 2], [3, 4], [5, 6]]


def test_as_many_devices_as_cores_or_more_get_one_core_each_round_robin():
    assert plan_cpu_slices(2, [0, 1]) == [[0], [1]]
    assert plan_cpu_slices(4, [0, 1]) == [[0], [1], [0], [1]]
    assert plan_cpu_slices(3, [2, 5]) == [[2], [5], [2]]


def test_shared_cores_names_the_devices_on_each_shared_core():
    slices = dict(zip("abcd", plan_cpu_slices(4, [0, 1])))
    assert shared_cores(slices) == {0: ["a", "c"], 1: ["b", "d"]}
    assert shared_cores(dict(zip("ab", plan_cpu_slices(2, [0, 1])))) == {}


def test_device_masks_map_to_the_slice_host_cores_and_back():
    cpus = CpuSlice.of([4, 6, 7])
    assert cpus.count == 3
    assert cpus.host_set(0b101) == {4, 7}
    assert cpus.host_set(0b1000) == set()  # no device core 3
    assert cpus.device_mask({6, 7, 1}) == 0b110  # host core 1 is not the device's
