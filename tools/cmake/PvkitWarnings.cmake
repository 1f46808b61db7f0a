# Warnings are errors in pvkit's own code. Targets opt in with
# pvkit_strict(<target>) so that third-party headers pulled in as SYSTEM
# includes never break the build. -Wnull-dereference is left out: GCC 12
# reports false positives inside inlined libstdc++ string code (seen with CLI11).
set(PVKIT_WARNINGS
    -Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion
    -Wcast-align -Wformat=2 -Wundef -Wimplicit-fallthrough)
set(PVKIT_CXX_WARNINGS -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual)

function(pvkit_strict target)
  target_compile_options(${target} PRIVATE
    ${PVKIT_WARNINGS}
    $<$<COMPILE_LANGUAGE:CXX>:${PVKIT_CXX_WARNINGS}>)
endfunction()
