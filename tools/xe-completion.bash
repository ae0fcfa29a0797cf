# bash completion for xe (installed as /usr/share/bash-completion/completions/xe).
# Commands come from `xe help --minimal`, a command's parameters from `xe help <command>`,
# uuids and field names from the server, so the lists follow the daemon's datamodel.

_xe_params() {
    # reqd and optional params of a command, one per line, "=" appended unless a map prefix ("x:")
    xe help "$1" 2>/dev/null | sed -n 's/^ *\(reqd\|optional\) params *: *//p' | tr ',' '\n' |
        sed -e 's/^ *//' -e 's/ *$//' -e '/^$/d' -e '/:$/!s/$/=/'
}

_xe() {
    local line=${COMP_LINE:0:$COMP_POINT}
    local cur=${line##*[[:space:]]}
    local cmd=${COMP_WORDS[1]}
    local words=() key val class values

    if [[ $line != *[[:space:]]*[[:space:]]* ]]; then
        words=($(compgen -W "$(xe help --minimal 2>/dev/null | tr ',' ' ')" -- "$cur"))
    elif [[ $cur == *=* ]]; then
        key=${cur%%=*}
        val=${cur#*=}
        class=${cmd%%-*}
        case $key in
        uuid) values=$(xe "$class-list" params=uuid --minimal 2>/dev/null) ;;
        vm) values=$(xe vm-list params=uuid --minimal 2>/dev/null) ;;
        *-uuid) values=$(xe "${key%-uuid}-list" params=uuid --minimal 2>/dev/null) ;;
        param-name) values=$(_xe_params "$class-list" | tr -d '=') ;;
        power-state) values="running halted suspended paused" ;;
        force | minimal | all | sharable | read-only | bootable | unpluggable) values="true false" ;;
        esac
        values=${values//,/ }
        words=($(compgen -P "$key=" -W "$values" -- "$val"))
    else
        words=($(compgen -W "$(_xe_params "$cmd") --minimal --force --nossl -s -p -u -pw" -- "$cur"))
        compopt -o nospace 2>/dev/null
    fi
    # readline splits words at = and : (COMP_WORDBREAKS): offer only what follows the last one.
    if [[ $cur == *[=:]* && $COMP_WORDBREAKS == *=* ]]; then
        local prefix=${cur%"${cur##*[=:]}"}
        words=("${words[@]#"$prefix"}")
    fi
    COMPREPLY=("${words[@]}")
}

complete -F _xe xe
