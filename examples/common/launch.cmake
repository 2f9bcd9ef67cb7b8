# Examples.*Launch: `encc launch -n 2 -- EXAMPLE --small` must exit 0 (the loss fell) and both
# ranks must report the same parameter checksum (the averaged gradients and the batch norm
# synchronized over the whole batch keep them identical).
#   cmake -DENCC=path/to/encc -DEXAMPLE=path/to/example -P launch.cmake
if(NOT EXAMPLE)
  message(FATAL_ERROR "the example was not built: install libstb-dev (scripts/setup.sh does) and reconfigure")
endif()
execute_process(COMMAND ${ENCC} launch -n 2 -- ${EXAMPLE} --small RESULT_VARIABLE rc OUTPUT_VARIABLE stdout
                ERROR_VARIABLE stderr)
message("${stdout}${stderr}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "encc launch -n 2 -- ${EXAMPLE} --small failed (exit ${rc})")
endif()
string(REGEX MATCHALL "rank [01]: parameter checksum [^\n]+" lines "${stdout}")
list(LENGTH lines n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected a parameter checksum from each of 2 ranks, got ${n}")
endif()
list(GET lines 0 a)
list(GET lines 1 b)
string(REGEX REPLACE "rank [01]: " "" a "${a}")
string(REGEX REPLACE "rank [01]: " "" b "${b}")
if(NOT a STREQUAL b)
  message(FATAL_ERROR "the ranks ended with different parameters: ${a} / ${b}")
endif()
message("${EXAMPLE} on 2 ranks: ${a} on both")
