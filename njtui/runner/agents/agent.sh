# The njtui Bash runtime agent (protocol 1, see docs/protocol.md). Run with bash:
#   bash agent.sh --journal PATH [--idle-timeout SECONDS]
#
# Bash builtins only — no external command — so it runs in an image that has bash and nothing
# else. Three processes share the work:
#   main     runs each cell by sourcing it at the top level, so variables, functions, aliases
#            and the working directory persist between cells; a cell's stdout and stderr go to
#            two pipes, its stdin is /dev/null;
#   emitter  the only writer of messages: it numbers them (seq), appends each to the journal,
#            then writes it to stdout; it reads the two output pipes a chunk at a time (so
#            partial lines arrive within milliseconds) and the control pipe where main and the
#            reader report; it answers `status` and ends the agent when idle;
#   reader   reads requests from stdin, passes cells to main in order, and turns `interrupt`
#            into SIGINT for the cell's process group.
# Pipes come from `exec {fd}<> <(:)`: a pipe opened read-write, shared by all three processes.

__njt_journal=""
__njt_idle=1200
while (($#)); do
    case $1 in
    --journal) __njt_journal=$2; shift 2 ;;
    --idle-timeout) __njt_idle=$2; shift 2 ;;
    *) shift ;;
    esac
done

# Seconds (possibly "12.5") to microseconds, for integer arithmetic.
__njt_us() {
    local whole=${1%%[.,]*} frac=
    [[ $1 == *[.,]* ]] && frac=${1#*[.,]}
    frac=${frac}000000
    REPLY=$((10#${whole:-0} * 1000000 + 10#${frac:0:6}))
}
__njt_now() { REPLY=${EPOCHREALTIME/[.,]/}; REPLY=$((10#$REPLY)); }
__njt_secs() { printf -v REPLY '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); }

__njt_us "$__njt_idle"; __njt_idle_us=$REPLY
read -r _ _ _ _ __njt_pgid _ </proc/$$/stat 2>/dev/null || __njt_pgid=0
__njt_main=$$
__njt_instance="bash-$$-${EPOCHREALTIME/[.,]/}-$RANDOM"
__njt_cellfile="${__njt_journal%/*}/cell-$$.sh"
[[ $__njt_journal == */* ]] || __njt_cellfile="/tmp/njtui-cell-$$.sh"
printf -v __njt_controls '%b' '\001\002\003\004\005\006\007\010\013\014\016\017\020\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037'

# JSON string body of $1 in REPLY.
__njt_esc() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    if [[ $s == *["$__njt_controls"]* ]]; then
        local i c hex
        for ((i = 0; i < ${#__njt_controls}; i++)); do
            c=${__njt_controls:i:1}
            [[ $s == *"$c"* ]] || continue
            printf -v hex '\\u%04x' "'$c"
            s=${s//"$c"/$hex}
        done
    fi
    REPLY=$s
}

# The text of a JSON string body in REPLY (what the client's json.dumps produces).
__njt_unesc() {
    local s=$1 placeholder=$'\001' out= hex ch
    s=${s//\\\\/$placeholder}
    s=${s//\\n/$'\n'}
    s=${s//\\t/$'\t'}
    s=${s//\\r/$'\r'}
    s=${s//\\\"/\"}
    s=${s//\\\//\/}
    s=${s//\\b/$'\b'}
    s=${s//\\f/$'\f'}
    while [[ $s == *\\u* ]]; do
        out+=${s%%\\u*}
        s=${s#*\\u}
        hex=${s:0:4}
        s=${s:4}
        printf -v ch "\\u$hex"
        out+=$ch
    done
    out+=$s
    REPLY=${out//$placeholder/\\}
}

exec {__njt_out}<> <(:)
exec {__njt_err}<> <(:)
exec {__njt_ctl}<> <(:)
exec {__njt_req}<> <(:)
exec {__njt_never}<> <(:)
exec {__njt_ack}<> <(:)
exec {__njt_intp}<> <(:)
exec {__njt_stdin}<&0
exec 0</dev/null

# ---------------------------------------------------------------- emitter
__njt_emitter() {
    trap '' INT PIPE
    LC_NUMERIC=C
    local seq=0 running=null count=0 queued=0 journal_fd= now last sleep=0.001 line kind fields chunk
    local -a f
    if [[ -n $__njt_journal ]]; then
        : >"$__njt_journal"
        exec {journal_fd}>>"$__njt_journal"
    fi
    __njt_now; last=$REPLY

    emit() { # exec-json type fields
        local message
        seq=$((seq + 1))
        message="{\"seq\":$seq,\"exec\":$1,\"type\":\"$2\",\"t\":$EPOCHREALTIME$3}"
        [[ -n $journal_fd ]] && printf '%s\n' "$message" >&"$journal_fd"
        printf '%s\n' "$message" 2>/dev/null
    }
    chunk_from() { # fd name: one chunk, if any
        chunk=
        IFS= read -r -d '' -N 512 -t 0.002 -u "$1" chunk
        [[ -n $chunk ]] || return 1
        __njt_esc "$chunk"
        emit "$running" stream ",\"name\":\"$2\",\"text\":\"$REPLY\""
    }
    drain() { # all output written so far, alternating the two streams
        local more=1
        while ((more)); do
            more=0
            if read -t 0 -u "$__njt_out"; then chunk_from "$__njt_out" stdout && more=1; fi
            if read -t 0 -u "$__njt_err"; then chunk_from "$__njt_err" stderr && more=1; fi
        done
    }
    finish() { # reason
        drain
        emit null exit ",\"reason\":\"$1\""
        kill -TERM "$__njt_reader" "$__njt_main" 2>/dev/null
        builtin exit 0
    }

    __njt_esc "$__njt_instance"
    emit null hello ",\"agent\":\"bash\",\"protocol\":1,\"instance\":\"$REPLY\",\"pid\":$__njt_main,\"language\":\"bash\",\"idle_timeout\":$__njt_idle"
    while :; do
        local got=0
        if read -t 0 -u "$__njt_out"; then chunk_from "$__njt_out" stdout && got=1; fi
        if read -t 0 -u "$__njt_err"; then chunk_from "$__njt_err" stderr && got=1; fi
        if read -t 0 -u "$__njt_ctl"; then
            got=1
            IFS= read -r -u "$__njt_ctl" line
            IFS=$'\t' read -r -a f <<<"$line"
            case ${f[0]} in
            Q) # queued: exec meta
                local position=$queued
                [[ $running == null ]] || position=$((position + 1))
                emit "\"${f[1]}\"" queued ",\"meta\":${f[2]},\"position\":$position"
                queued=$((queued + 1)) ;;
            S) # start: exec count meta
                queued=$((queued > 0 ? queued - 1 : 0))
                running="\"${f[1]}\""
                count=${f[2]}
                emit "$running" start ",\"meta\":${f[3]},\"count\":$count"
                printf 'A\n' >&"$__njt_ack" ;;
            D) # done: exec status count duration exit-code
                drain
                if [[ ${f[2]} == error && ${f[5]} != 0 ]]; then
                    emit "\"${f[1]}\"" error ",\"ename\":\"ExitStatus\",\"evalue\":\"exit status ${f[5]}\",\"traceback\":\"\""
                fi
                emit "\"${f[1]}\"" done ",\"status\":\"${f[2]}\",\"count\":${f[3]},\"duration\":${f[4]},\"exit_code\":${f[5]}"
                running=null
                __njt_now; last=$REPLY
                printf 'A\n' >&"$__njt_ack" ;;
            X) # a queued cell dropped by an interrupt
                queued=$((queued > 0 ? queued - 1 : 0))
                emit "\"${f[1]}\"" done ",\"status\":\"interrupted\",\"count\":null,\"duration\":0.0"
                __njt_now; last=$REPLY ;;
            T) # status
                local state=busy idle_for=0
                if [[ $running == null ]]; then
                    __njt_now; __njt_secs $((REPLY - last))
                    state=idle idle_for=$REPLY
                fi
                emit null status ",\"state\":\"$state\",\"running\":$running,\"queued\":$queued,\"count\":$count,\"idle_for\":$idle_for" ;;
            L) # log: level text
                __njt_esc "${f[2]}"
                emit null log ",\"level\":\"${f[1]}\",\"text\":\"$REPLY\"" ;;
            E) finish "${f[1]}" ;;
            esac
        fi
        if ((got)); then
            sleep=0.001
            continue
        fi
        if [[ $running == null ]] && ((queued == 0)); then
            __njt_now
            ((REPLY - last >= __njt_idle_us)) && finish idle
        fi
        read -t "$sleep" -u "$__njt_never"
        case $sleep in 0.001) sleep=0.005 ;; 0.005) sleep=0.02 ;; esac
    done
}

# ---------------------------------------------------------------- reader
__njt_reader() {
    # SIGINT reaches the whole process group; here it means "tell main the queue is void".
    trap 'printf "INTERRUPT\n" >&"$__njt_req"' INT
    trap '' PIPE
    local line op exec meta rc
    while :; do
        IFS= read -r line
        rc=$?
        if ((rc > 128)); then continue; fi # a signal, not the end of input
        if ((rc != 0)) && [[ -z $line ]]; then break; fi
        op=${line#*\"op\":\"}
        op=${op%%\"*}
        case $op in
        execute)
            exec=${line#*\"exec\":\"}
            exec=${exec%%\"*}
            meta=${line##*\"meta\":}
            meta=${meta%\}}
            [[ $line == *\"meta\":* ]] || meta='{}'
            printf 'Q\t%s\t%s\n' "$exec" "$meta" >&"$__njt_ctl"
            printf 'EXEC\t%s\n' "$line" >&"$__njt_req" ;;
        interrupt) __njt_interrupt ;;
        status) printf 'T\n' >&"$__njt_ctl" ;;
        secrets) printf 'SECRETS\t%s\n' "$line" >&"$__njt_req" ;;
        shutdown)
            __njt_interrupt
            printf 'E\tshutdown\n' >&"$__njt_ctl"
            break ;;
        *) printf 'L\twarning\t%s\n' "bad request: ${line:0:200}" >&"$__njt_ctl" ;;
        esac
    done
    [[ $op == shutdown ]] || printf 'E\tstdin closed\n' >&"$__njt_ctl"
}

__njt_interrupt() {
    # The byte tells main for certain (bash may not run its INT trap when the foreground child
    # dies of the same SIGINT); the signal stops what runs.
    printf 'x' >&"$__njt_intp"
    if ((__njt_pgid == __njt_main)); then
        kill -INT -- "-$__njt_pgid" 2>/dev/null # the cell and its children; the reader's trap marks the queue
    else
        # Not a group leader (started by something that shares its group): signal main and
        # its children only, found in /proc.
        local stat pid ppid rest
        for stat in /proc/[0-9]*/stat; do
            read -r pid _ _ ppid rest <"$stat" 2>/dev/null || continue
            ((ppid == __njt_main && pid != __njt_emitter_pid && pid != BASHPID)) && kill -INT "$pid" 2>/dev/null
        done
        kill -INT "$__njt_main" 2>/dev/null
        printf 'INTERRUPT\n' >&"$__njt_req"
    fi
}

# ---------------------------------------------------------------- main
__njt_emitter &
__njt_emitter_pid=$!
__njt_reader <&"$__njt_stdin" &
__njt_reader=$!
exec {__njt_stdin}<&-
exec 1>/dev/null

__njt_two() { return 2; }
exit() {
    # `exit` in a cell ends the cell, not the runtime; in a subshell it is the real exit.
    if ((BASH_SUBSHELL > 0)) || [[ -z $__njt_in_cell ]]; then builtin exit "$@"; fi
    __njt_exit_code=${1-$?}
    __njt_stop=exit
    return "$__njt_exit_code"
}

# The emitter must have announced a cell's start before its output, and have emitted all of it
# before the next cell starts: main waits for its acknowledgement at both ends of a cell.
__njt_await_ack() {
    while :; do
        IFS= read -r -u "$__njt_ack" _
        (($? > 128)) || return 0
    done
}

# Secrets become exported variables and files in $NJTUI_SECRETS_DIR (a tmpfs in containers).
__njt_set_secrets() {
    local object=${1#*\"env\":\{} name
    local pair='^"([A-Za-z_][A-Za-z0-9_]*)":"(([^"\\]|\\.)*)",?(.*)$'
    while [[ $object =~ $pair ]]; do
        name=${BASH_REMATCH[1]}
        object=${BASH_REMATCH[4]}
        __njt_unesc "${BASH_REMATCH[2]}"
        export "$name=$REPLY"
        if [[ -n $NJTUI_SECRETS_DIR ]]; then
            (umask 077 && printf '%s' "$REPLY" >"$NJTUI_SECRETS_DIR/$name") 2>/dev/null
        fi
    done
}

__njt_stop=
__njt_count=0
trap '__njt_stop=interrupt' INT
trap '' PIPE
trap 'builtin exit 0' TERM
while :; do
    IFS= read -r -u "$__njt_req" __njt_request
    (($? > 128)) && continue # interrupted while waiting: the marker follows
    case $__njt_request in
    INTERRUPT)
        __njt_stop=
        while read -t 0 -u "$__njt_intp"; do read -r -N 1 -u "$__njt_intp" _; done
        continue ;;
    EXEC$'\t'*) ;;
    SECRETS$'\t'*)
        __njt_set_secrets "${__njt_request#SECRETS$'\t'}"
        continue ;;
    *) continue ;;
    esac
    __njt_request=${__njt_request#EXEC$'\t'}
    __njt_exec=${__njt_request#*\"exec\":\"}
    __njt_exec=${__njt_exec%%\"*}
    if [[ $__njt_stop == interrupt ]]; then
        printf 'X\t%s\n' "$__njt_exec" >&"$__njt_ctl"
        continue
    fi
    __njt_meta=${__njt_request##*\"meta\":}
    __njt_meta=${__njt_meta%\}}
    [[ $__njt_request == *\"meta\":* ]] || __njt_meta='{}'
    __njt_code=${__njt_request#*\"code\":\"}
    __njt_code=${__njt_code%\",\"meta\":*}
    [[ $__njt_request == *\"meta\":* ]] || __njt_code=${__njt_code%\"\}}
    __njt_unesc "$__njt_code"
    printf '%s\n' "$REPLY" >"$__njt_cellfile"
    __njt_count=$((__njt_count + 1))
    printf 'S\t%s\t%d\t%s\n' "$__njt_exec" "$__njt_count" "$__njt_meta" >&"$__njt_ctl"
    __njt_await_ack
    __njt_now; __njt_started=$REPLY
    __njt_exit_code=
    __njt_errexit=0
    __njt_in_cell=1
    shopt -s extdebug
    # Before each command of the cell: `set -e` is emulated (a real one would end the agent),
    # and a stop (interrupt, exit, errexit) returns from the sourced cell, abandoning the rest.
    trap '(( __njt_errexit )) && __njt_stop=errexit' ERR
    # Only commands of the cell itself return (a DEBUG trap returning non-zero elsewhere, here
    # in the agent, would skip the agent's own commands).
    trap '[[ $- != *e* ]] || { set +e; __njt_errexit=1; }; ! read -t 0 -u "$__njt_intp" || __njt_stop=interrupt; [[ -z $__njt_stop || ${BASH_SOURCE[0]} != "$__njt_cellfile" ]] || __njt_two' DEBUG
    . "$__njt_cellfile" </dev/null >&"$__njt_out" 2>&"$__njt_err"
    __njt_rc=$?
    trap - DEBUG
    trap - ERR
    shopt -u extdebug
    __njt_in_cell=
    __njt_now; __njt_secs $((REPLY - __njt_started)); __njt_duration=$REPLY
    case $__njt_stop in
    interrupt) __njt_status=interrupted; __njt_rc=130 ;;
    exit) __njt_rc=${__njt_exit_code:-0}; __njt_stop= ;;
    errexit) __njt_stop= ;;
    esac
    if [[ $__njt_status != interrupted ]]; then
        if ((__njt_rc == 0)); then __njt_status=ok; else __njt_status=error; fi
    fi
    printf 'D\t%s\t%s\t%d\t%s\t%d\n' "$__njt_exec" "$__njt_status" "$__njt_count" "$__njt_duration" "$__njt_rc" >&"$__njt_ctl"
    __njt_await_ack
    __njt_status=
done
