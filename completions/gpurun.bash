# bash completion for gpurun. Enable with: source <(gpurun completion bash)
# The candidates come from `gpurun __complete WORD...` (the last word is the one being completed):
# a first line ":DIRECTIVES" (files, dirs, nosort) then one "VALUE<TAB>DESCRIPTION" per line.

_gpurun() {
    local cur words cword
    if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
        # Keep "--gpu=A100:2" whole: '=' and ':' are word breaks for readline, not for gpurun.
        _get_comp_words_by_ref -n =: cur words cword
    else
        __gpurun_join_words
    fi

    local out
    out=$("${words[0]}" __complete "${words[@]:1:cword-1}" "$cur" 2>/dev/null) || return 0
    local directive=${out%%$'\n'*} line
    COMPREPLY=()

    case ",${directive#:}," in
        *,files,* | *,dirs,*)
            # Native path completion of what follows "--opt=".
            local path=$cur
            [[ $cur == -*=* ]] && path=${cur#*=}
            if [[ ,${directive#:}, == *,dirs,* ]]; then
                if declare -F _filedir >/dev/null 2>&1; then cur=$path _filedir -d; else
                    compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$path"); fi
            else
                if declare -F _filedir >/dev/null 2>&1; then cur=$path _filedir; else
                    compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$path"); fi
            fi
            return 0
            ;;
    esac
    [[ ,${directive#:}, == *,nosort,* ]] && compopt -o nosort 2>/dev/null

    # Readline replaces only the text after the last word break ('=' or ':'): drop what precedes it.
    [[ $out == *$'\n'* ]] || return 0
    local typed=""
    [[ $cur == *[=:]* ]] && typed=${cur%"${cur##*[=:]}"}
    while IFS= read -r line; do
        [[ -z $line ]] && continue
        line=${line%%$'\t'*}
        COMPREPLY+=("${line#"$typed"}")
    done <<<"${out#*$'\n'}"
    return 0
}

# Without bash-completion: rejoins the words that readline split at '=' and ':'.
__gpurun_join_words() {
    words=()
    local i w joined=0
    for ((i = 0; i <= COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if ((i > 0)) && { [[ $w == [=:]* ]] || ((joined)); }; then
            words[${#words[@]}-1]+=$w
        else
            words+=("$w")
        fi
        joined=0
        [[ $w == *[=:] ]] && joined=1
    done
    cword=$((${#words[@]} - 1))
    cur=${words[cword]}
}

complete -F _gpurun gpurun
