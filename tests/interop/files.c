/* Files, data and choices between the a2a plugin (in-process, with the
 * fake host of the unit tests) and an agent on @a2a-js/sdk (agent.mjs):
 * a file sent as a file part arrives with its bytes, media type and name;
 * the agent's file part comes back as an attachment and its data part as
 * a JSON block, from a message and from a task; a question with choices
 * offers them, and a pick continues the task.
 * Usage: a2a_interop_files URL 1.0|0.3|dual|rest|rest03 true|false
 * Exit 0 when every check passed, 1 otherwise (what differed on stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"

static int failed;

static void check(const char *what, const char *got, const char *want) {
    if (got && !strcmp(got, want)) return;
    fprintf(stderr, "FAIL %s:\n--- want\n%s\n--- got\n%s\n", what, want, got ? got : "(null)");
    failed = 1;
}

static const char *const DATA = "```json\n{\n  \"ok\": true,\n  \"n\": 2\n}\n```";
static const char *const OUT_FILE = "out.bin|application/octet-stream|11|agent bytes|-\n";

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s URL MODE STREAM\n", argv[0]);
        return 2;
    }
    ah_reset();
    ah_cfg("url", argv[1]);
    ah_cfg("stream", argv[3]);
    ah_cfg("timeout_s", "20");
    ah_cfg("poll_interval_ms", "50");
    if (!strcmp(argv[2], "dual")) ah_cfg("dialect", "0.3");
    rd_status st;
    rd_error err;
    void *be = ah_launch(&st, &err);
    if (!be || !ah_wait_ready(1, 10000)) {
        fprintf(stderr, "FAIL: the plugin did not start: %s\n", be ? "not ready" : err.msg);
        return 1;
    }
    static const char note[] = "hello from routerd";
    rd_attachment doc = {.size = sizeof doc,
                         .kind = "document",
                         .mime = "text/plain",
                         .name = "note.txt",
                         .data = note,
                         .len = sizeof note - 1};
    rd_attachment link = {.size = sizeof link,
                          .mime = "image/png",
                          .name = "pic.png",
                          .url = "https://files.example/pic.png"};
    const rd_attachment *atts[] = {&doc, &link};

    /* 0.3 REST parts carry no file name */
    int named = strcmp(argv[2], "rest03") != 0;
    const char *out_file = named ? OUT_FILE : "-|application/octet-stream|11|agent bytes|-\n";
    ah_result r = ah_call_files(be, 1, "file", 0, atts, 2);
    char want[512];
    snprintf(want, sizeof want,
             "got %s text/plain 18 hello from routerd\n"
             "got %s image/png url https://files.example/pic.png\n%s",
             named ? "note.txt" : "", named ? "pic.png" : "", DATA);
    check("file: status", r.st == RD_OK ? "ok" : r.err.msg, "ok");
    check("file: text", r.text, want);
    check("file: attachments", r.files, out_file);
    ah_result_free(&r);

    r = ah_call_files(be, 2, "filetask", 0, NULL, 0);
    snprintf(want, sizeof want, "report\n%s", DATA);
    check("filetask: status", r.st == RD_OK ? "ok" : r.err.msg, "ok");
    check("filetask: text", r.text, want);
    check("filetask: attachments", r.files, out_file);
    ah_result_free(&r);

    r = ah_call_files(be, 3, "choose", 0, NULL, 0);
    check("choose: text", r.text, "Proceed?");
    check("choose: choices", r.choices, "yes\nno\n");
    ah_result_free(&r);
    r = ah_call_files(be, 3, "yes", RD_MSG_CHOICE, NULL, 0);
    check("choice picked", r.text, "Hello, yes");
    ah_result_free(&r);

    ah_shutdown(be);
    if (!failed) printf("ok: files, data and choices (%s, stream=%s)\n", argv[2], argv[3]);
    return failed;
}
