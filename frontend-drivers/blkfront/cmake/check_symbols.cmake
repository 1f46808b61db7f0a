cmake_minimum_required(VERSION 3.25) # for IN_LIST in script mode
# cmake -DNM=<nm> -DLIB=<archive> -DALLOWED="memcpy;memset" -P check_symbols.cmake
#
# Fails if LIB references any undefined symbol outside ALLOWED: the
# freestanding blkfront core may only expect the documented shim from its
# environment.
execute_process(COMMAND ${NM} -u ${LIB} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -u ${LIB} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(bad "")
foreach(line IN LISTS lines)
  string(STRIP "${line}" line)
  if(line MATCHES "^U +(.+)$")
    set(sym "${CMAKE_MATCH_1}")
    if(NOT sym IN_LIST ALLOWED)
      list(APPEND bad "${sym}")
    endif()
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "freestanding blkfront references symbols outside its shim: ${bad}")
endif()
message(STATUS "freestanding blkfront: undefined symbols within {${ALLOWED}}")
