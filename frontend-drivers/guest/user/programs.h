/* Every user program's main. */
#ifndef PVKIT_MINI_PROGRAMS_H
#define PVKIT_MINI_PROGRAMS_H

int hello_main(void);
int hypercall_test_main(void);
int fault_main(void);
int spin_main(void);
int evtchn_test_main(void);
int pool_test_main(void);
int store_test_main(void);
int store_hostile_index_main(void);
int store_hostile_header_main(void);
int handoff_test_main(void);
int idle_main(void);
int blk_selftest_main(void);
int blk_bench_main(void);
int blk_hostile_main(void);

#endif /* PVKIT_MINI_PROGRAMS_H */
