/* A shared object without the descriptor symbol. */
int routerd_not_a_plugin(void);
__attribute__((visibility("default"))) int routerd_not_a_plugin(void) {
    return 42;
}
